"""Does bfloat16 autocast speed up `04`'s trainers on this CPU without hurting valid NDCG@10? (issue 22)

Trains the main bi-encoder (`two_tower.train_two_tower`) and the cross-encoder (`reranker.train_reranker`) for
the same few steps from the same seed, once in float32 and once under bfloat16 autocast, on the full profile's
prepared data (run `make data PROFILE=full` first), and prints training pairs/s and the valid score each reaches:
NDCG@10 on `04`'s valid sub-catalogue for the bi-encoder, NDCG@10 after re-ranking a zero-shot MiniLM top 20 of
300 valid queries for the cross-encoder (trained here on the training judgments alone, without `04`'s mined
negatives). A short run: it measures speed, and whether bf16 changes what a few hundred steps learn, not the
converged figure.

Measured 2026-12-05 on 2 CPU cores (AMD EPYC, AVX512-BF16), `--steps 150 --cross-steps 100`: bi-encoder 36.4
pairs/s fp32 → 52.0 bf16, valid 0.5341 → 0.5349 (from 0.4657); cross-encoder 41.0 → 60.0 examples/s, valid
re-ranking 0.1617 → 0.1611.

    .venv/bin/python scripts/bf16_probe.py --steps 150 --cross-steps 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--steps", type=int, default=150, help="bi-encoder steps of 32 pairs per precision")
    parser.add_argument("--cross-steps", type=int, default=100, help="cross-encoder steps of 32 examples per precision")
    args = parser.parse_args()

    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec import config as C
    from ecomrec.data.pairs import RELEVANT, judged_pairs
    from ecomrec.data.prepare import load_prepared
    from ecomrec.models import retrieval as R
    from ecomrec.models.encoders import load_minilm, minilm_path
    from ecomrec.models.reranker import train_reranker
    from ecomrec.models.search import DenseIndex, encode
    from ecomrec.models.two_tower import subcatalogue_scorer, train_two_tower

    C.set_seeds(C.SEED)
    frames = load_prepared(args.artifacts, "full")
    products = frames["homedepot/products"]
    ids, titles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
    query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
    qrels = R.search_qrels(frames, "valid")
    valid_ids = qrels[C.COL_QUERY_ID].unique()
    pairs = judged_pairs(frames, "train", RELEVANT)
    queries = pairs[C.COL_QUERY].unique().tolist()
    query_row, row_of = {q: i for i, q in enumerate(queries)}, {p: i for i, p in enumerate(ids)}
    score, _ = subcatalogue_scorer(ids, titles, valid_ids, query_text.loc[valid_ids].tolist(), qrels, distractors=4_000)
    for bf16 in (False, True):
        model = load_minilm("cpu")
        fit = train_two_tower(model, queries, titles, pairs[C.COL_QUERY].map(query_row).to_numpy(),
                              pairs[C.COL_PRODUCT_ID].map(row_of).to_numpy(), score, eval_every=args.steps, patience=1,
                              max_epochs=args.steps * 32 / len(pairs), bf16=bf16)
        train_seconds = fit.training_seconds
        print(f"bi-encoder {'bf16' if bf16 else 'fp32'}: {args.steps} steps, valid sub-catalogue NDCG@10 "
              f"{fit.history['valid'].iloc[0]:.4f} → {fit.history['valid'].iloc[-1]:.4f}; "
              f"{fit.history['pairs'].iloc[-1] / train_seconds:.1f} pairs/s (evaluations excluded)", flush=True)

    rng = np.random.default_rng(C.SEED)
    sample = rng.choice(valid_ids, size=300, replace=False)
    minilm = load_minilm("cpu")
    found, scores = DenseIndex(ids, encode(minilm, titles)).search(encode(minilm, query_text.loc[sample].tolist()), k=20)
    first = R.run_frame(sample, found, scores)
    sample_qrels = qrels[qrels[C.COL_QUERY_ID].isin(sample)]
    title_of = dict(zip(ids, titles))
    judgments = frames["homedepot/judgments_train"]
    labels = R.relevance_to_label(judgments[C.COL_RELEVANCE])
    q_texts = judgments[C.COL_QUERY_ID].map(query_text).tolist()
    t_texts = judgments[C.COL_PRODUCT_ID].map(title_of).tolist()

    def rerank_score(cross) -> float:
        return float(R.evaluate_run(sample_qrels, R.rerank(cross, query_text.to_dict(), title_of, first, depth=20,
                                                           batch_size=64))["ndcg@10"].mean())

    print(f"zero-shot MiniLM top 20, not re-ranked: {R.evaluate_run(sample_qrels, first)['ndcg@10'].mean():.4f}")
    for bf16 in (False, True):
        C.set_seeds(C.SEED)
        cross = CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu")
        start = time.perf_counter()
        fit = train_reranker(cross, q_texts, t_texts, labels, rerank_score, eval_every=args.cross_steps, patience=1,
                             max_epochs=args.cross_steps * 32 / len(labels), bf16=bf16)
        train_seconds = fit.training_seconds
        print(f"cross-encoder {'bf16' if bf16 else 'fp32'}: {args.cross_steps} steps, valid re-ranking NDCG@10 "
              f"{fit.history['valid'].iloc[-1]:.4f}; {fit.history['pairs'].iloc[-1] / train_seconds:.1f} examples/s "
              f"(evaluations excluded; {time.perf_counter() - start:.0f} s in all)", flush=True)


if __name__ == "__main__":
    main()
