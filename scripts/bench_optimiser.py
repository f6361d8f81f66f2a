"""How much of a training step of `04`'s trainers is the optimiser, and what does PyTorch's fused AdamW save?

`04`'s main bi-encoder and its cross-encoder update all 22.7 M parameters of MiniLM every step. This times one
training step at a time, in parts (forward, backward, optimiser step), under bf16 autocast as `04` trains where
the CPU has it natively, on random batches of 32 of the full profile's training data, through the trainers' own batch losses (run `make data
PROFILE=full` first). Each batch goes through the same model twice, once stepped by PyTorch's default AdamW and
once by the fused one (`ecomrec.models.loop.adamw`), so the two are timed side by side in the same minutes and a
change in the host's speed hits both. The learning rate is tiny, so the weights stay the packaged ones. It prints
the median seconds of each part after 5 warm-up steps.

Measured 2026-12-07 20:37 UTC on the 2-core AMD EPYC of the reference run (AVX512-BF16, 2 threads), 40 steps:
  two-tower (MNRL, batch 32): forward 0.203 s, backward 0.176, default AdamW 0.089 → fused 0.016 (step 0.469 → 0.394, 16% less)
  cross-encoder (BCE, batch 32): forward 0.177 s, backward 0.135, default AdamW 0.091 → fused 0.016 (step 0.405 → 0.327, 19% less)

Measured again 2026-12-08 01:37 UTC on a 2-core Intel Xeon (Sapphire Rapids, AVX512-BF16 and AMX), 30 steps, with the
trainers' own batch losses (`two_tower.mnrl_batch_loss`, masking known positives, and `reranker.bce_batch_loss`):
  two-tower (MNRL, batch 32): forward 0.185 s, backward 0.161, default AdamW 0.083 → fused 0.016 (step 0.436 → 0.355, 19% less)
  cross-encoder (BCE, batch 32): forward 0.177 s, backward 0.131, default AdamW 0.086 → fused 0.016 (step 0.400 → 0.318, 20% less)

    .venv/bin/python scripts/bench_optimiser.py --steps 40
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", default="artifacts")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per trainer and optimiser (5 warm-up ones dropped)")
    args = parser.parse_args()
    if args.steps <= 5:
        parser.error("--steps must be above the 5 warm-up steps")

    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from ecomrec import config as C
    from ecomrec.config import native_bf16
    from ecomrec.data.pairs import RELEVANT, judged_pairs
    from ecomrec.data.prepare import load_prepared
    from ecomrec.models import retrieval as R
    from ecomrec.models.encoders import load_minilm, minilm_path
    from ecomrec.models.loop import adamw
    from ecomrec.models.query_tower import training_examples
    from ecomrec.models.reranker import bce_batch_loss
    from ecomrec.models.two_tower import mnrl_batch_loss

    C.set_seeds(C.SEED)
    bf16 = native_bf16("cpu")
    frames = load_prepared(args.artifacts, "full")
    products = frames["homedepot/products"]
    ids, titles = products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()
    title_of = dict(zip(ids, titles))
    query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
    # the batches `04` trains on: its main bi-encoder's pairs and its cross-encoder's judgments (soft labels)
    pairs = judged_pairs(frames, "train", RELEVANT)
    queries = pairs[C.COL_QUERY].unique().tolist()
    row_of, query_row = {p: i for i, p in enumerate(ids)}, {q: i for i, q in enumerate(queries)}
    examples, positives = training_examples(pairs[C.COL_QUERY].map(query_row).to_numpy(), pairs[C.COL_PRODUCT_ID].map(row_of).to_numpy())
    judgments = frames["homedepot/judgments_train"]
    labels = R.relevance_to_label(judgments[C.COL_RELEVANCE])
    cross_q, cross_t = judgments[C.COL_QUERY_ID].map(query_text).tolist(), judgments[C.COL_PRODUCT_ID].map(title_of).tolist()
    rng = np.random.default_rng(C.SEED)

    two_tower_model = load_minilm("cpu")
    cross = CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu")
    trainers = {  # name → (model, loss of a batch of example rows: the trainers' own, number of examples)
        "two-tower (MNRL, batch 32)": (two_tower_model, mnrl_batch_loss(two_tower_model, queries, titles, examples,
                                                                        positives, bf16=bf16), len(examples)),
        "cross-encoder (BCE, batch 32)": (cross, bce_batch_loss(cross, cross_q, cross_t, labels, bf16=bf16), len(labels)),
    }
    print(f"bf16 autocast: {'on' if bf16 else 'off'}; torch threads: {torch.get_num_threads()}")
    for name, (model, loss_of, n) in trainers.items():
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimisers = {"default": torch.optim.AdamW(params, lr=1e-12), "fused": adamw(params, lr=1e-12)}
        times = {(kind, part): [] for kind in optimisers for part in ("forward", "backward", "optimiser")}
        for _ in range(args.steps):
            rows = rng.choice(n, size=32, replace=False)
            for kind, optimiser in optimisers.items():
                start = time.perf_counter()
                loss = loss_of(rows)
                forward = time.perf_counter()
                optimiser.zero_grad()
                loss.backward()
                backward = time.perf_counter()
                optimiser.step()
                done = time.perf_counter()
                for part, seconds in (("forward", forward - start), ("backward", backward - forward),
                                      ("optimiser", done - backward)):
                    times[(kind, part)].append(seconds)
        median = {key: float(np.median(values[5:])) for key, values in times.items()}
        step = {kind: sum(median[(kind, part)] for part in ("forward", "backward", "optimiser")) for kind in optimisers}
        print(f"{name}: forward {np.mean([median[(k, 'forward')] for k in optimisers]):.3f} s, backward "
              f"{np.mean([median[(k, 'backward')] for k in optimisers]):.3f}, default AdamW {median[('default', 'optimiser')]:.3f} "
              f"→ fused {median[('fused', 'optimiser')]:.3f} (step {step['default']:.3f} → {step['fused']:.3f}, "
              f"{1 - step['fused'] / step['default']:.0%} less)", flush=True)


if __name__ == "__main__":
    main()
