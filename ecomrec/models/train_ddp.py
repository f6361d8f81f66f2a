"""Data-parallel bi-encoder fine-tuning: `train_biencoder`, launched once per process.

    # 2 CPU processes on one machine (gloo), as the tests run it:
    torchrun --standalone --nproc_per_node 2 -m ecomrec.models.train_ddp --model PATH --pairs pairs.parquet --out DIR --steps 60
    # every GPU of one machine (nccl is chosen when CUDA is present):
    torchrun --standalone --nproc_per_node $(nvidia-smi -L | wc -l) -m ecomrec.models.train_ddp --model PATH --pairs ... --device cuda
    # the same through accelerate:
    accelerate launch --num_processes 2 --cpu -m ecomrec.models.train_ddp --model PATH --pairs ... --out DIR

Under a launcher, transformers' Trainer joins the process group the launcher describes (RANK, WORLD_SIZE,
MASTER_ADDR in the environment), wraps the model in DistributedDataParallel (gradients are averaged
across processes after every backward pass) and gives each process a different shard of every step's
data. `--batch-size` is per process; MNRL gathers the embeddings of all processes, so the in-batch
negatives are those of the global batch. Rank 0 saves the model and writes `fit.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd
from ecomrec import config as C


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a saved encoder folder (e.g. the packaged MiniLM)")
    parser.add_argument("--pairs", required=True, help="parquet with columns anchor, positive[, negative]")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=C.SEED)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)

    import torch
    from datasets import Dataset

    from ecomrec.models.encoders import sentence_encoder
    from ecomrec.models.retrieval import train_biencoder

    pairs = pd.read_parquet(args.pairs)
    missing = {"anchor", "positive"} - set(pairs.columns)
    if missing:
        raise SystemExit(f"{args.pairs} lacks columns {sorted(missing)}")
    model = sentence_encoder(args.model, device=args.device)
    fit = train_biencoder(model, Dataset.from_pandas(pairs, preserve_index=False), Path(args.out) / "checkpoints",
                          max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                          seed=args.seed, device=args.device, logging_steps=max(1, args.steps // 10),
                          gather_across_devices=True)
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    backend = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
    if int(os.environ.get("RANK", "0")) == 0:
        from ecomrec.storage import atomic_path, write_text_atomic

        with atomic_path(Path(args.out) / "model") as folder:
            model.save(str(folder))
        summary = {"world_size": world_size, "backend": backend, "steps": args.steps,
                   "global_batch": args.batch_size * world_size, "seconds": fit.seconds,
                   "samples_per_second": fit.samples_per_second, "loss": fit.history["loss"].tolist()}
        write_text_atomic(Path(args.out) / "fit.json", json.dumps(summary, indent=1))
        print(json.dumps({k: v for k, v in summary.items() if k != "loss"}))


if __name__ == "__main__":
    main()
