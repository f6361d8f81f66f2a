import hashlib
import json

import pandas as pd
import pytest

from ecomrec.config import Profile
from fixture_files import TINY
from ecomrec.data.errors import DataError, SchemaError
from ecomrec.data.sources import sha256_file
from ecomrec.data.prepare import MANIFEST, load_prepared, prepare

TINY_SAMPLED = Profile("tiny", search_queries=8, search_valid_queries=2, search_test_queries=2, rec_users=5, rec_kcore=3)


def digests(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.parquet"))}


def test_same_seed_gives_byte_identical_files(data_dir, tmp_path):
    first = prepare(TINY, data_dir, tmp_path / "a", seed=7).out_dir
    second = prepare(TINY, data_dir, tmp_path / "b", seed=7).out_dir
    other = prepare(TINY, data_dir, tmp_path / "c", seed=8).out_dir
    assert digests(first) == digests(second) and len(digests(first)) == 14
    assert (first / MANIFEST).read_text() == (second / MANIFEST).read_text()
    assert (first / "homedepot/queries.parquet").read_bytes() != (other / "homedepot/queries.parquet").read_bytes()


def test_splits_cover_everything_without_leakage(data_dir, tmp_path):
    frames = prepare(TINY, data_dir, tmp_path, seed=1).frames
    split_queries = [set(frames[f"homedepot/judgments_{s}"]["query_id"]) for s in ("train", "valid", "test")]
    assert len(split_queries[1]) == 2 and len(split_queries[2]) == 3
    assert not (split_queries[0] & split_queries[1] or split_queries[0] & split_queries[2] or split_queries[1] & split_queries[2])
    assert sum(len(frames[f"office/loo_{s}"]) for s in ("train", "valid", "test")) == len(frames["office/interactions"])
    assert len(frames["office/loo_test"]) == frames["office/interactions"]["user_id"].nunique()


def test_profile_subsampling(data_dir, tmp_path):
    frames = prepare(TINY_SAMPLED, data_dir, tmp_path, seed=1).frames
    assert len(frames["homedepot/queries"]) == 8
    assert frames["office/interactions"]["user_id"].nunique() == 5
    assert "profile subsample: 5 users, then 3-core" in set(frames["cleaning_log"]["step"])


def test_load_prepared_round_trip_and_missing(data_dir, tmp_path):
    written = prepare(TINY, data_dir, tmp_path, seed=1).frames
    read = load_prepared(tmp_path, TINY)
    assert set(read) == set(written) and all(read[k].equals(written[k]) for k in written)
    with pytest.raises(FileNotFoundError, match="make data PROFILE=smoke"):
        load_prepared(tmp_path / "nothing", "smoke")


def test_load_prepared_checks_schemas(data_dir, tmp_path):
    out_dir = prepare(TINY, data_dir, tmp_path, seed=1).out_dir
    broken = pd.read_parquet(out_dir / "office/loo_test.parquet").assign(rating=9.0)
    broken.to_parquet(out_dir / "office/loo_test.parquet", index=False)
    manifest = json.loads((out_dir / MANIFEST).read_text())  # as if prepare itself had written the bad frame
    manifest["files"]["office/loo_test.parquet"]["sha256"] = sha256_file(out_dir / "office/loo_test.parquet")
    (out_dir / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SchemaError, match="office interactions.*above 5"):
        load_prepared(tmp_path, TINY)


def test_load_prepared_refuses_files_that_differ_from_the_manifest(data_dir, tmp_path):
    out_dir = prepare(TINY, data_dir, tmp_path, seed=1).out_dir
    assert load_prepared(tmp_path, TINY, seed=1)
    with pytest.raises(DataError, match="prepared with seed 1, not 2"):
        load_prepared(tmp_path, TINY, seed=2)
    path = out_dir / "homedepot/queries.parquet"
    path.write_bytes(path.read_bytes()[:-10])  # a write cut short
    with pytest.raises(DataError, match="queries.parquet is missing or differs from the sha256"):
        load_prepared(tmp_path, TINY)
    path.unlink()
    with pytest.raises(DataError, match="missing or differs"):
        load_prepared(tmp_path, TINY)
