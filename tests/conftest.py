"""Shared fixtures: a data directory of small files in the original formats, and the real data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fixture_files import write_homedepot, write_office


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    """A data directory of small files in the shared layout. No published checksum covers them, so loads in
    these tests skip the check, as a user's own download would (ECOMREC_VERIFY_CHECKSUMS=0); the checks
    themselves are tested in test_sources and test_download."""
    from ecomrec.data.sources import VERIFY_ENV

    root = tmp_path / "data"
    write_homedepot(root / "homedepot")
    write_office(root / "amazon-office-2014")
    monkeypatch.setenv(VERIFY_ENV, "0")
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


@pytest.fixture(scope="session")
def smoke_dirs(tmp_path_factory):
    """Where this session's smoke-profile notebooks write (tests/smoke); tests/model seeds their SmolLM2 cache."""
    base = tmp_path_factory.mktemp("smoke")
    return {"reports": base / "reports", "artifacts": base / "artifacts"}
