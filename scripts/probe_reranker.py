"""Probe for issue 22: does a listwise loss, or negatives from the pipeline's own (fused) first stage, make a
better cross-encoder than `04`'s pointwise BCE, at the same number of optimiser steps (the same wall-clock)?

It reuses what a full run of `04` left (run `make report PROFILE=full` up to `04` first): the main bi-encoder
(`finetune/biencoder_best` and its cached catalogue) and the pipeline's fusion weight (`search_pipeline.json`).
Every variant trains a fresh MiniLM cross-encoder with `04`'s settings (batch 32 pairs, lr 5e-5, warm-up and
linear decay over the full profile's budget of steps, selected on re-ranking a seeded sample of 300 valid
queries' dense top 20, patience 3 evaluations 150 steps apart) and differs only in its training examples/loss:

* `bce`: `04`'s recipe: every training judgment (soft label (g − 1)/2), 4 hard negatives per query mined from the
  dense top 30 (margin 0.05) and 2 uniform ones, binary cross-entropy;
* `bce-fused`: the same, the hard negatives mined from the fused (BM25 + dense) top 30 that the pipeline re-ranks
  (still dropping candidates within the margin of the query's best relevant product in dense cosine);
* `bce-dapt`: `04`'s recipe, starting from `03`'s domain-adapted MiniLM (masked-LM on Home Depot text) instead of
  the packaged sentence encoder;
* `lce`: localised contrastive estimation (Gao, Dai and Callan, ECIR 2021): a group of 8 per relevant training
  pair (relevance ≥ 2): the relevant product and 7 negatives drawn from its query's pool (up to 20 hard
  negatives from the fused top 30, the query's judged products of grade < 2, 2 uniform ones), softmax
  cross-entropy on the relevant one; 4 groups per step (32 pairs, as `bce`).

Each variant then re-ranks the valid sample's dense and fused top 50, and the depth (10/20/50) and interpolation
weight are chosen on it as in `04`. With `--test`, the chosen settings re-rank every test query once.

    .venv/bin/python scripts/probe_reranker.py --variants bce,lce [--test]

Measured 2026-12-08 01:41-02:19 UTC on a 2-core Intel Xeon (Sapphire Rapids, AMX), with the full run of be891e3's
`04` (1,201 steps each; valid = the 300-query sample, NDCG@10; test = all 2,000 queries, each variant's valid choice):

| variant | best valid, dense top 20 (step) | valid pipeline (depth, w) | test pipeline | test pipeline − fused [95 %] |
|---|---|---|---|---|
| bce (04's recipe) | 0.381 (750) | 0.403 (50, 0.75) | 0.420 | +0.042 [+0.034, +0.049] |
| bce-fused | 0.361 (450) | 0.392 (50, 0.5) | 0.410 | +0.032 [+0.026, +0.038] |
| lce | 0.352 (900) | 0.382 (50, 0.5) | 0.413 | +0.034 [+0.028, +0.040] |
| bce-dapt (03:37-03:53 UTC) | 0.375 (750) | 0.397 (50, 0.5) | 0.415 | +0.036 [+0.031, +0.042] |

(first stages: valid sample dense 0.326, fused 0.368; test dense 0.349, fused 0.378.) None of the changes helps at
this budget: `04`'s pointwise BCE with dense-mined negatives stays the best of the three on valid, and on test.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--variants", default="bce,bce-fused,lce")
    parser.add_argument("--test", action="store_true", help="also re-rank every test query with each variant's valid choice")
    parser.add_argument("--out", default="/tmp/probe_reranker.json")
    args = parser.parse_args()

    import pandas as pd
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder
    from torch import nn

    from ecomrec import config as C
    from ecomrec.config import native_bf16
    from ecomrec.data.pairs import RELEVANT
    from ecomrec.data.prepare import load_prepared
    from ecomrec.metrics import paired_bootstrap
    from ecomrec.models import retrieval as R
    from ecomrec.models.encoders import minilm_path, sentence_encoder
    from ecomrec.models.loop import adamw, train_until_valid
    from ecomrec.models.pipeline import SearchPipeline, fuse
    from ecomrec.models.reranker import bce_batch_loss, choose_rerank, interpolate, mine_hard_negatives
    from ecomrec.models.search import BM25Index, Bf16Autocast, DenseIndex, encode

    SEED, DEPTH, MINE_DEPTH, MARGIN = C.SEED, 100, 30, 0.05
    profile = C.get_profile("full")
    C.set_seeds(SEED)
    bf16 = native_bf16("cpu")
    root = Path(args.artifacts) / "full"
    frames = load_prepared(args.artifacts, "full")
    products = frames["homedepot/products"]
    ids, titles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
    title_of, row_of = dict(zip(ids, titles)), {p: i for i, p in enumerate(ids)}
    query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
    query_of = query_text.to_dict()
    qrels = {split: R.search_qrels(frames, split) for split in ("valid", "test")}
    eval_queries = {split: q[C.COL_QUERY_ID].unique() for split, q in qrels.items()}

    bm25 = BM25Index(ids, titles)
    dense_model = sentence_encoder(root / "finetune" / "biencoder_best")
    catalogue = np.load(root / "finetune" / "biencoder_best_catalogue.npy")
    index = DenseIndex(ids, catalogue)
    weight = SearchPipeline.load(root / "finetune" / "search_pipeline.json").dense_weight

    def first_stages(query_ids, k):
        texts = query_text.loc[query_ids].tolist()
        vectors = encode(dense_model, texts)
        dense = R.run_frame(query_ids, *index.search(vectors, k=k))
        lexical = R.run_frame(query_ids, *bm25.search_matched(texts, k=k))
        return dense, fuse(lexical, dense, weight), vectors

    runs = {split: first_stages(eval_queries[split], DEPTH)[:2] for split in ("valid", "test")}
    for split, (dense, fused) in runs.items():
        print(f"{split}: dense {R.evaluate_run(qrels[split], dense)['ndcg@10'].mean():.4f}, fused "
              f"{R.evaluate_run(qrels[split], fused)['ndcg@10'].mean():.4f}", flush=True)

    # training candidates, as 04 mines them (dense), and from the fused list
    judgments = frames["homedepot/judgments_train"]
    train_ids = judgments[C.COL_QUERY_ID].unique()
    train_dense, train_fused, train_vectors = first_stages(train_ids, MINE_DEPTH)
    relevant = judgments[judgments[C.COL_RELEVANCE] >= RELEVANT]
    query_pos = pd.Series(np.arange(len(train_ids)), index=train_ids)
    relevant_scores = np.einsum("ij,ij->i", train_vectors[query_pos.loc[relevant[C.COL_QUERY_ID]].to_numpy()],
                                catalogue[relevant[C.COL_PRODUCT_ID].map(row_of).to_numpy()])
    positive_score = pd.Series(relevant_scores, index=relevant[C.COL_QUERY_ID].to_numpy()).groupby(level=0).max()

    def cosine_run(run):  # the fused candidates with their dense cosine as the score (the margin's scale)
        q = train_vectors[query_pos.loc[run[C.COL_QUERY_ID]].to_numpy()]
        d = catalogue[run[C.COL_PRODUCT_ID].map(row_of).to_numpy()]
        return run.assign(score=np.einsum("ij,ij->i", q, d))

    rng = np.random.default_rng(SEED)
    random_negatives = pd.DataFrame({C.COL_QUERY_ID: np.repeat(train_ids, 2),
                                     C.COL_PRODUCT_ID: ids[rng.integers(0, len(ids), size=len(train_ids) * 2)]})
    random_negatives = random_negatives[~R.is_judged(random_negatives, judgments)]

    def pointwise(candidates):
        hard = mine_hard_negatives(candidates, judgments, positive_score, margin=MARGIN, per_query=4, seed=SEED)
        negatives = pd.concat([hard, random_negatives], ignore_index=True)
        queries = judgments[C.COL_QUERY_ID].map(query_text).tolist() + negatives[C.COL_QUERY_ID].map(query_text).tolist()
        texts = judgments[C.COL_PRODUCT_ID].map(title_of).tolist() + negatives[C.COL_PRODUCT_ID].map(title_of).tolist()
        labels = np.concatenate([R.relevance_to_label(judgments[C.COL_RELEVANCE]), np.zeros(len(negatives))])
        return queries, texts, labels

    dense_examples = pointwise(train_dense)  # 04's examples: bce's and bce-dapt's, and every variant's step budget

    rerank_valid = np.random.default_rng(SEED).choice(eval_queries["valid"], size=profile.rerank_valid_queries, replace=False)
    sample = {name: run[run[C.COL_QUERY_ID].isin(rerank_valid)] for name, run in zip(("dense", "fused"), runs["valid"])}
    sample_qrels = qrels["valid"][qrels["valid"][C.COL_QUERY_ID].isin(rerank_valid)]

    def valid_rerank(model) -> float:
        reranked = R.rerank(Bf16Autocast(model) if bf16 else model, query_of, title_of, sample["dense"], depth=20, batch_size=64)
        return float(R.evaluate_run(sample_qrels, reranked)["ndcg@10"].mean())

    def train(variant):
        start_from = root / "pretrain" / "minilm_dapt" if variant == "bce-dapt" else minilm_path()
        cross = CrossEncoder(str(start_from), num_labels=1, max_length=64, device="cpu")
        if variant in ("bce", "bce-fused", "bce-dapt"):
            queries, texts, labels = pointwise(cosine_run(train_fused)) if variant == "bce-fused" else dense_examples
            batch_loss, n, batch = bce_batch_loss(cross, queries, texts, labels, bf16=bf16), len(labels), 32
        elif variant == "lce":
            hard = mine_hard_negatives(cosine_run(train_fused), judgments, positive_score, margin=MARGIN, per_query=20, seed=SEED)
            low = judgments[judgments[C.COL_RELEVANCE] < RELEVANT][[C.COL_QUERY_ID, C.COL_PRODUCT_ID]]
            pool = pd.concat([hard, low, random_negatives], ignore_index=True)
            pool = pool.groupby(C.COL_QUERY_ID)[C.COL_PRODUCT_ID].agg(lambda s: s.map(title_of).tolist()).to_dict()
            groups = relevant[relevant[C.COL_QUERY_ID].isin(pool)]
            group_query = groups[C.COL_QUERY_ID].to_numpy()
            group_title = groups[C.COL_PRODUCT_ID].map(title_of).to_numpy()
            draw = np.random.default_rng(SEED + 1)

            def batch_loss(rows):
                pairs = []
                for r in rows:
                    negatives = pool[group_query[r]]
                    chosen = draw.choice(len(negatives), size=7, replace=len(negatives) < 7)
                    q = query_of[group_query[r]]
                    pairs += [(q, group_title[r])] + [(q, negatives[i]) for i in chosen]
                inputs = cross.preprocess(pairs)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = cross(inputs)["scores"].view(len(rows), 8).float()
                return nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long))

            n, batch = len(groups), 4
        else:
            raise SystemExit(f"unknown variant {variant!r}")
        steps = int(np.ceil(profile.cross_max_epochs * len(dense_examples[2]) / 32))  # bce's budget, in steps
        optimiser = adamw([p for p in cross.parameters() if p.requires_grad], lr=5e-5)
        cross.train()
        fit = train_until_valid({"cross": cross}, optimiser, n, batch_loss, lambda: valid_rerank(cross), batch_size=batch,
                                eval_every=profile.cross_eval_every, patience=profile.cross_patience,
                                max_epochs=steps * batch / n, seed=SEED, progress=True, desc=variant)
        return cross, fit

    results = {}
    for variant in args.variants.split(","):
        start = time.perf_counter()
        cross, fit = train(variant)
        scorer, cache = (Bf16Autocast(cross) if bf16 else cross), {}
        out = {"train_seconds": time.perf_counter() - start, "best_valid_top20": fit.best_valid, "best_step": int(fit.best_step),
               "stopped": fit.stopped, "history": fit.history[["step", "valid"]].round(4).values.tolist()}
        grids = {}
        for name, first in sample.items():
            reranked = R.rerank(scorer, query_of, title_of, first, depth=50, batch_size=64, cache=cache)
            grids[name] = choose_rerank(first, reranked, sample_qrels, (10, 20, 50), (0.0, 0.25, 0.5, 0.75, 1.0))
            alone = grids[name][grids[name]["weight"] == 1.0].iloc[0]
            out[f"valid_{name}_first"] = float(R.evaluate_run(sample_qrels, first)["ndcg@10"].mean())
            out[f"valid_{name}_alone"] = [int(alone["depth"]), float(alone["ndcg@10"])]
            out[f"valid_{name}_best"] = [int(grids[name]["depth"].iloc[0]), float(grids[name]["weight"].iloc[0]), float(grids[name]["ndcg@10"].iloc[0])]
        print(variant, json.dumps({k: v for k, v in out.items() if k != "history"}), flush=True)
        if args.test:
            dense, fused = runs["test"]
            test = {"dense": dense, "fused": fused}
            per_query = {}
            for name, first in test.items():
                depth, w, _ = out[f"valid_{name}_best"]
                reranked = R.rerank(scorer, query_of, title_of, first, depth=depth, batch_size=16, cache=cache)
                per_query[name] = R.evaluate_run(qrels["test"], interpolate(first, reranked, w, depth))["ndcg@10"]
                per_query[name + "_first"] = R.evaluate_run(qrels["test"], first)["ndcg@10"]
                out[f"test_{name}_best"] = float(per_query[name].mean())
            d = paired_bootstrap(per_query["fused_first"].to_numpy(), per_query["fused"].loc[per_query["fused_first"].index].to_numpy(), seed=SEED)
            out["test_pipeline_vs_fused"] = [d["diff"], d["low"], d["high"]]
            out["test_seconds"] = time.perf_counter() - start - out["train_seconds"]
            print(variant, "test", {k: v for k, v in out.items() if k.startswith("test")}, flush=True)
        results[variant] = out
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
