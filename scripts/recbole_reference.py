"""Re-run RecBole 1.2.1 on the shared Amazon Office 5-core file: the external figures `05` prints beside its own.

RecBole is not a dependency of the course (it pins old libraries and needs a few shims to run on numpy 2 and
torch 2.6+), so this script runs in a virtual environment of its own that sees the course's packages:

    python3 -m venv /tmp/rb && .venv/bin/python -c "import site; print(site.getsitepackages()[0])" \
        > "$(/tmp/rb/bin/python -c 'import site; print(site.getsitepackages()[0])')/course.pth"
    /tmp/rb/bin/pip install --no-deps recbole==1.2.1 colorlog==4.7.2 texttable tabulate thop && /tmp/rb/bin/pip install tensorboard
    /tmp/rb/bin/python scripts/recbole_reference.py Pop ItemKNN

It converts `reviews_Office_Products_5.json.gz` row for row, in the file's order, into RecBole's atomic
`.inter` file (user, item, rating, timestamp), then trains and tests each model with the settings issue 24
names: leave-one-out `valid_and_test` split, time order, full ranking, NDCG@10 and Hit@10, seed 2020,
RecBole's default hyper-parameters. RecBole sorts by timestamp stably, so same-day events keep the file's
order: a different tie rule from `01`'s, which is why its test targets differ for some users.

Measured 2026-12-05 on 2 CPU cores: Pop test NDCG@10 0.0018 (Hit@10 0.0039), ItemKNN 0.0229 (Hit@10 0.0398):
`ecomrec.recommend.report.RECBOLE_RERUN`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path

SOURCE = "amazon-office-2014/reviews_Office_Products_5.json.gz"


def convert(data_dir: Path, out_dir: Path) -> Path:
    """Write `<out_dir>/office/office.inter` from the shared reviews file, in its row order."""
    target = out_dir / "office" / "office.inter"
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(data_dir / SOURCE, "rt") as source, open(target, "w") as out:
        out.write("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
        for line in source:
            review = json.loads(line)
            out.write(f"{review['reviewerID']}\t{review['asin']}\t{review['overall']}\t{review['unixReviewTime']}\n")
    return target


def run(model_name: str, data_path: Path) -> dict:
    import numpy as np
    import torch

    # RecBole 1.2.1 predates numpy 2 (np.float_ …) and torch 2.6's weights_only=True default for torch.load
    np.float_, np.complex_, np.unicode_ = np.float64, np.complex128, np.str_
    _load = torch.load
    torch.load = lambda *a, **k: _load(*a, **{**k, "weights_only": False})
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=model_name, dataset="office", config_dict={
        "data_path": str(data_path), "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["NDCG", "Hit"], "topk": [10], "valid_metric": "NDCG@10", "seed": 2020, "device": "cpu",
        "show_progress": False, "checkpoint_dir": str(data_path / "saved")})
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(model_name)(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    trainer.fit(train, valid, saved=True, show_progress=False)
    return dict(trainer.evaluate(test, load_best_model=True, show_progress=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="RecBole model names, e.g. Pop ItemKNN BPR SASRec")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole_office"))
    args = parser.parse_args(argv)
    if not (args.data_dir / SOURCE).is_file():
        sys.exit(f"{args.data_dir / SOURCE} not found: pass --data-dir (the folder holding amazon-office-2014/)")
    data_dir, args.work_dir = args.data_dir.resolve(), args.work_dir.resolve()
    convert(data_dir, args.work_dir)
    os.chdir(args.work_dir)  # RecBole writes log_tensorboard/ into the working directory
    for name in args.models:
        result = run(name, args.work_dir)
        print(f"{name}: " + ", ".join(f"test {k} {float(v):.4f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
