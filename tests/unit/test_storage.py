"""Atomic writes: a target is replaced whole, or left as it was when the writer fails."""

import json

import numpy as np
import pandas as pd
import pytest

from ecomrec.storage import atomic_path, save_array, save_parquet, write_json_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_debris(tmp_path):
    target = write_text_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new conte")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_folders_are_swapped_whole(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(b"v1")
    with pytest.raises(ValueError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "config.json").write_text("{}")
        raise ValueError("the weights never came")
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"]
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "weights.bin").write_bytes(b"v2")
    assert (target / "weights.bin").read_bytes() == b"v2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(tmp_path / "x.parquet"):
        pass
    assert not (tmp_path / "x.parquet").exists()


def test_savers_round_trip(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert pd.read_parquet(save_parquet(frame, tmp_path / "f.parquet")).equals(frame)
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert (np.load(save_array(tmp_path / "a.npy", array)) == array).all()
    assert json.loads(write_json_atomic(tmp_path / "d" / "m.json", {"b": 1, "a": 2}).read_text()) == {"a": 2, "b": 1}
