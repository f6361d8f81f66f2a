"""Data-parallel training on 2 CPU processes (torchrun, gloo): both processes join and the loss falls."""

import json
import os
import subprocess
import sys

import pandas as pd

from test_retrieval import tiny_sentence_model


def test_biencoder_trains_on_two_processes(tmp_path):
    tiny_sentence_model(tmp_path)  # writes tmp_path / "tiny"
    words = ["drill", "hammer", "paint", "hose", "faucet", "toilet seat", "ladder", "lamp"]
    pd.DataFrame({"anchor": words * 4, "positive": [f"{w} for the home, model {i}" for i in range(4) for w in words]}
                 ).to_parquet(tmp_path / "pairs.parquet")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ecomrec.models.train_ddp", "--model", str(tmp_path / "tiny"), "--pairs",
               str(tmp_path / "pairs.parquet"), "--out", str(tmp_path / "out"), "--steps", "12", "--batch-size", "4",
               "--learning-rate", "1e-3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["world_size"] == 2 and fit["backend"] == "gloo" and fit["global_batch"] == 8
    assert fit["loss"][-1] < fit["loss"][0]
    assert (tmp_path / "out" / "model" / "config.json").is_file()
