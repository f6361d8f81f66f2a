"""Atomic writes: a file or folder appears complete, or not at all.

Everything a notebook writes for a later one goes through here: it is written under a temporary name beside
its target, then renamed into place (a rename within one folder is atomic on POSIX). A run killed half-way
leaves the previous version, or nothing, never a truncated parquet file or a model folder without weights.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; write a file or a folder there. On success it replaces `path`
    (an old folder is swapped out, then removed); on an exception it is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        if tmp.is_dir() and path.exists():
            old = _temporary_sibling(path)
            os.replace(path, old)  # folders cannot be replaced in one rename: swap, then clean up
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, value: object) -> Path:
    """Write `value` as indented, key-sorted JSON to `path` atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def save_parquet(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """`frame.to_parquet(path, index=False)`, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def save_array(path: str | os.PathLike, array: np.ndarray) -> Path:
    """`np.save(path, array)` atomically (`path` should end in .npy: numpy would add it to the temporary name)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    return Path(path)
