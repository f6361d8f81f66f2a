"""Seeded splits: search by query, recommendation leave-one-out and global temporal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.data.clean import order_events

SPLITS = ("train", "valid", "test")


def split_queries(queries: pd.DataFrame, n_valid: int, n_test: int, seed: int = C.SEED) -> pd.DataFrame:
    """Assign each query to train/valid/test by a seeded permutation of query ids.

    Queries are unique by normalised text (see `normalize_query`), so no normalised query can appear in
    two splits: every judgment of a query follows the query.
    """
    n = len(queries)
    if n_valid < 0 or n_test < 0 or n_valid + n_test >= n:
        raise ValueError(f"cannot take {n_valid} valid + {n_test} test queries out of {n}")
    if queries[C.COL_QUERY].duplicated().any():
        raise ValueError("queries must be unique by normalised text before splitting")
    order = np.random.default_rng(seed).permutation(np.sort(queries[C.COL_QUERY_ID].to_numpy()))
    split = pd.Series("train", index=order, dtype="str")
    split.iloc[:n_test] = "test"
    split.iloc[n_test:n_test + n_valid] = "valid"
    out = queries.copy()
    out[C.COL_SPLIT] = out[C.COL_QUERY_ID].map(split).astype("str")
    return out


def leave_one_out_split(events: pd.DataFrame, user: str = C.COL_USER, item: str = C.COL_ITEM,
                        time: str = C.COL_TIMESTAMP) -> dict[str, pd.DataFrame]:
    """Each user's last event → test, second-last → valid, the rest → train (ties: `order_events`)."""
    ordered = order_events(events, user, item, time)
    counts = ordered.groupby(user)[item].transform("size")
    if (counts < 3).any():
        raise ValueError(f"{int((counts < 3).sum())} events belong to users with fewer than 3 events; apply k_core first")
    from_end = ordered.groupby(user).cumcount(ascending=False)
    return {
        "train": ordered[from_end >= 2].reset_index(drop=True),
        "valid": ordered[from_end == 1].reset_index(drop=True),
        "test": ordered[from_end == 0].reset_index(drop=True),
    }


def temporal_split(events: pd.DataFrame, valid_frac: float = 0.1, test_frac: float = 0.1,
                   time: str = C.COL_TIMESTAMP, user: str = C.COL_USER, item: str = C.COL_ITEM) -> dict[str, pd.DataFrame]:
    """Global time cut: events before the (1-valid-test) quantile → train, then valid, the latest → test.

    Cuts fall on timestamps, so same-day events never straddle a split; the fractions are approximate.
    """
    if not 0 < valid_frac < 1 or not 0 < test_frac < 1 or valid_frac + test_frac >= 1:
        raise ValueError(f"bad fractions valid={valid_frac}, test={test_frac}")
    ordered = order_events(events, user, item, time)
    times = np.sort(ordered[time].to_numpy())
    valid_start = times[int(np.floor(len(times) * (1 - valid_frac - test_frac)))]
    test_start = times[int(np.floor(len(times) * (1 - test_frac)))]
    if not valid_start < test_start:
        raise ValueError("too few distinct timestamps for a three-way temporal split")
    t = ordered[time]
    return {
        "train": ordered[t < valid_start].reset_index(drop=True),
        "valid": ordered[(t >= valid_start) & (t < test_start)].reset_index(drop=True),
        "test": ordered[t >= test_start].reset_index(drop=True),
    }
