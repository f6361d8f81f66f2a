"""Load, clean, subsample (per profile), split and write both datasets as parquet under the artifacts dir.

Run as `python -m ecomrec.data.prepare --profile smoke` (what `make data` does) or call `prepare()`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.data import schema
from ecomrec.data.amazon import Office, load_office
from ecomrec.data.clean import CleaningLog, k_core, order_events
from ecomrec.data.errors import DataError
from ecomrec.data.homedepot import HomeDepot, load_homedepot
from ecomrec.data.sources import sha256_file
from ecomrec.storage import atomic_path, write_text_atomic
from ecomrec.data.split import SPLITS, leave_one_out_split, split_queries, temporal_split

MANIFEST = "manifest.json"
# Frames checked again when read back (split files share their parent frame's schema).
SCHEMAS = {"homedepot/products": schema.PRODUCTS, "homedepot/queries": schema.QUERIES,
           "homedepot/judgments": schema.JUDGMENTS, "office/items": schema.ITEMS,
           "office/interactions": schema.INTERACTIONS, "office/loo": schema.INTERACTIONS,
           "office/temporal": schema.INTERACTIONS}


@dataclass
class Prepared:
    """What `prepare` wrote, plus the full cleaned data it started from (for the notebook's EDA)."""

    homedepot: HomeDepot
    office: Office
    frames: dict[str, pd.DataFrame]  # "homedepot/queries", "office/loo_test", ... as written
    log: pd.DataFrame
    out_dir: Path


def subsample_queries(hd: HomeDepot, n: int | None, seed: int, log: CleaningLog) -> HomeDepot:
    """Keep `n` seeded-random queries with all their judgments and products (None keeps everything)."""
    if n is None or n >= len(hd.queries):
        return hd
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(hd.queries[C.COL_QUERY_ID].to_numpy(), size=n, replace=False))
    judgments = hd.judgments[hd.judgments[C.COL_QUERY_ID].isin(keep)].reset_index(drop=True)
    log.add("homedepot", f"profile subsample: {n} queries", len(hd.judgments), len(judgments))
    return HomeDepot(raw=hd.raw, queries=hd.queries[hd.queries[C.COL_QUERY_ID].isin(keep)].reset_index(drop=True),
                     products=hd.products[hd.products[C.COL_PRODUCT_ID].isin(judgments[C.COL_PRODUCT_ID])].reset_index(drop=True),
                     judgments=judgments, log=hd.log)


def subsample_users(office: Office, n: int | None, kcore: int, seed: int, log: CleaningLog) -> Office:
    """Keep `n` seeded-random users, then re-apply the k-core (None keeps everything)."""
    if n is None or n >= office.interactions[C.COL_USER].nunique():
        return office
    users = np.sort(office.interactions[C.COL_USER].unique())
    keep = np.random.default_rng(seed).choice(users, size=n, replace=False)
    events = office.interactions[office.interactions[C.COL_USER].isin(keep)]
    events = order_events(k_core(events, C.COL_USER, C.COL_ITEM, kcore), C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP)
    log.add("amazon-office", f"profile subsample: {n} users, then {kcore}-core", len(office.interactions), len(events))
    items = office.items[office.items[C.COL_ITEM].isin(events[C.COL_ITEM])].reset_index(drop=True)
    return Office(raw_reviews=office.raw_reviews, items=items, interactions=events, log=office.log)


def _write_parquet(frame: pd.DataFrame, path: Path) -> str:
    """Write deterministically (same frame → same bytes), atomically; return the sha256."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow", compression="zstd")
    return sha256_file(path)


def prepare(profile: str | C.Profile = "smoke", data_dir: str | Path | None = None, artifact_root: str | Path = "artifacts",
            seed: int = C.SEED, verify: bool | None = None) -> Prepared:
    """Build every data artifact of `profile` under <artifact_root>/<profile>/data and return them."""
    prof = C.get_profile(profile)
    hd_full = load_homedepot(data_dir, verify=verify)
    office_full = load_office(data_dir, kcore=5, verify=verify)
    log = CleaningLog(hd_full.log.rows + office_full.log.rows)
    hd = subsample_queries(hd_full, prof.search_queries, seed, log)
    office = subsample_users(office_full, prof.rec_users, prof.rec_kcore, seed, log)

    queries = split_queries(hd.queries, prof.search_valid_queries, prof.search_test_queries, seed)
    frames = {"homedepot/products": hd.products, "homedepot/queries": queries}
    with_split = hd.judgments.merge(queries[[C.COL_QUERY_ID, C.COL_SPLIT]], on=C.COL_QUERY_ID)
    for name in SPLITS:
        part = with_split[with_split[C.COL_SPLIT] == name].drop(columns=C.COL_SPLIT)
        frames[f"homedepot/judgments_{name}"] = part.reset_index(drop=True)
    frames["office/items"] = office.items
    frames["office/interactions"] = office.interactions
    for kind, parts in (("loo", leave_one_out_split(office.interactions)),
                        ("temporal", temporal_split(office.interactions, prof.temporal_valid_frac, prof.temporal_test_frac))):
        for name in SPLITS:
            frames[f"office/{kind}_{name}"] = parts[name]
    log_frame = log.to_frame()
    frames["cleaning_log"] = log_frame

    out_dir = C.artifact_dir(artifact_root, profile) / "data"
    manifest = {"profile": prof.name, "seed": seed, "files": {}}
    for key, frame in frames.items():
        digest = _write_parquet(frame, out_dir / f"{key}.parquet")
        manifest["files"][f"{key}.parquet"] = {"rows": len(frame), "sha256": digest}
    write_text_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Prepared(homedepot=hd_full, office=office_full, frames=frames, log=log_frame, out_dir=out_dir)


def load_prepared(artifact_root: str | Path, profile: str | C.Profile, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Read back every frame `prepare` wrote for `profile`, each checked against the sha256 its manifest
    recorded; a clear error if it has not been run, or (when `seed` is given) was run with another seed."""
    out_dir = Path(artifact_root) / C.get_profile(profile).name / "data"
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run `make data PROFILE={C.get_profile(profile).name}` "
                                "(or the 01_data notebook) first")
    written = json.loads(manifest.read_text())
    if seed is not None and written["seed"] != seed:
        raise DataError(f"{out_dir} was prepared with seed {written['seed']}, not {seed}: run "
                        f"`make data PROFILE={C.get_profile(profile).name} SEED={seed}` (or the 01_data notebook)")
    files = written["files"]
    for name, entry in files.items():  # a file rewritten or cut short since `prepare` is not read as if it were its own
        path = out_dir / name
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path} is missing or differs from the sha256 {manifest} recorded for it (a partial "
                            f"write or a file changed by hand): run `make data PROFILE={C.get_profile(profile).name}` again")
    frames = {name.removesuffix(".parquet"): pd.read_parquet(out_dir / name) for name in files}
    for name, frame in frames.items():
        if name in SCHEMAS or name.rsplit("_", 1)[0] in SCHEMAS:
            schema.check_frame(frame, SCHEMAS.get(name) or SCHEMAS[name.rsplit("_", 1)[0]])
    return frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", choices=sorted(C.PROFILES))
    parser.add_argument("--data-dir", default=None, help=f"default: ${C.DATA_DIR_ENV}, ../shared/data or data/")
    parser.add_argument("--artifact-dir", default="artifacts")
    parser.add_argument("--seed", type=int, default=C.SEED)
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the published-checksum check (for originals you downloaded yourself; "
                             "same as ECOMREC_VERIFY_CHECKSUMS=0)")
    args = parser.parse_args(argv)
    prepared = prepare(args.profile, args.data_dir, args.artifact_dir, args.seed, verify=False if args.no_verify else None)
    for key, frame in prepared.frames.items():
        print(f"{key:28s} {len(frame):>8,d} rows")
    print(f"wrote {prepared.out_dir}")


if __name__ == "__main__":
    main()
