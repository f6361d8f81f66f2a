"""How much of a training step of `04`'s trainers is the optimiser, and what does PyTorch's fused AdamW save?

`04`'s main bi-encoder and its cross-encoder update all 22.7 M parameters of MiniLM every step. This times one
training step at a time, in parts (forward, backward, optimiser step), under bf16 autocast as `04` trains where
the CPU has it natively, on random batches of 32 of the full profile's training data (run `make data
PROFILE=full` first). Each batch goes through the same model twice, once stepped by PyTorch's default AdamW and
once by the fused one (`ecomrec.models.loop.adamw`), so the two are timed side by side in the same minutes and a
change in the host's speed hits both. The learning rate is tiny, so the weights stay the packaged ones. It prints
the median seconds of each part after 5 warm-up steps.

Measured 2026-12-07 20:37 UTC on the 2-core AMD EPYC of the reference run (AVX512-BF16, 2 threads), 40 steps:
  two-tower (MNRL, batch 32): forward 0.203 s, backward 0.176, default AdamW 0.089 → fused 0.016 (step 0.469 → 0.394, 16% less)
  cross-encoder (BCE, batch 32): forward 0.177 s, backward 0.135, default AdamW 0.091 → fused 0.016 (step 0.405 → 0.327, 19% less)

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
    from torch import nn

    from ecomrec import config as C
    from ecomrec.config import native_bf16
    from ecomrec.data.pairs import RELEVANT, judged_pairs
    from ecomrec.data.prepare import load_prepared
    from ecomrec.models import retrieval as R
    from ecomrec.models.encoders import load_minilm, minilm_path
    from ecomrec.models.loop import adamw
    from ecomrec.models.query_tower import embed

    C.set_seeds(C.SEED)
    bf16 = native_bf16("cpu")
    frames = load_prepared(args.artifacts, "full")
    title_of = frames["homedepot/products"].set_index(C.COL_PRODUCT_ID)[C.COL_TITLE]
    query_text = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
    pairs = judged_pairs(frames, "train", RELEVANT)
    judgments = frames["homedepot/judgments_train"]
    labels = torch.from_numpy(np.asarray(R.relevance_to_label(judgments[C.COL_RELEVANCE]), dtype=np.float32))
    cross_q, cross_t = judgments[C.COL_QUERY_ID].map(query_text).tolist(), judgments[C.COL_PRODUCT_ID].map(title_of).tolist()
    rng = np.random.default_rng(C.SEED)

    def two_tower_loss(model, rows):
        batch = pairs.iloc[rows]
        q = embed(model, batch[C.COL_QUERY].tolist(), bf16)
        p = embed(model, batch[C.COL_TITLE].tolist(), bf16)
        return nn.functional.cross_entropy(20.0 * q @ p.T, torch.arange(len(rows)))

    def cross_loss(cross, rows):
        inputs = cross.preprocess([(cross_q[i], cross_t[i]) for i in rows])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = cross(inputs)["scores"].view(-1)
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels[rows])

    trainers = {
        "two-tower (MNRL, batch 32)": (load_minilm("cpu"), two_tower_loss, len(pairs)),
        "cross-encoder (BCE, batch 32)": (CrossEncoder(str(minilm_path()), num_labels=1, max_length=64, device="cpu"),
                                          cross_loss, len(labels)),
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
                loss = loss_of(model, rows)
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
