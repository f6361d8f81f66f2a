"""Shared fixtures: a data directory of small files in the original formats, and the real data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixture_files import write_homedepot, write_office


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory in the shared layout, with SHA256SUMS manifests so checksum checks pass."""
    from ecomrec.data.download import record_checksum

    root = tmp_path / "data"
    record_checksum(write_homedepot(root / "homedepot"))
    for path in write_office(root / "amazon-office-2014"):
        record_checksum(path)
    return root


@pytest.fixture(scope="session")
def real_data_dir():
    """The real data directory; missing data skips locally but fails in CI (which always has it)."""
    from ecomrec import config as C
    from ecomrec.data.sources import HOMEDEPOT_TRAIN, OFFICE_META, OFFICE_REVIEWS

    root = C.resolve_data_dir(None)
    missing = [str(s.path(root)) for s in (HOMEDEPOT_TRAIN, OFFICE_REVIEWS, OFFICE_META) if not s.path(root).is_file()]
    if missing:
        message = f"real data not found: {missing} (set {C.DATA_DIR_ENV})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


@pytest.fixture(scope="session")
def minilm():
    """The packaged all-MiniLM-L6-v2 on the CPU, loaded once per test session."""
    from ecomrec.models.encoders import load_minilm

    return load_minilm("cpu")
