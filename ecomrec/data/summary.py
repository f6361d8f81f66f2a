"""Counts and checks that `01_data` shows and records: dataset cards, split summaries, leakage."""

from __future__ import annotations

import pandas as pd

from ecomrec import config as C
from ecomrec.data.amazon import Office
from ecomrec.data.clean import normalize_query
from ecomrec.data.homedepot import HomeDepot
from ecomrec.data.sources import PROVENANCE_COUNTS
from ecomrec.data.split import SPLITS


def raw_counts(hd: HomeDepot, office: Office) -> dict[str, dict[str, int]]:
    """Counts of the files as read, before cleaning, keyed like PROVENANCE_COUNTS."""
    return {
        "homedepot": {"judgments": len(hd.raw), "queries": hd.raw["search_term"].nunique(),
                      "products": hd.raw["product_uid"].nunique()},
        "amazon-office": {"interactions": len(office.raw_reviews), "users": office.raw_reviews[C.COL_USER].nunique(),
                          "items": office.raw_reviews[C.COL_ITEM].nunique()},
    }


def dataset_cards(hd: HomeDepot, office: Office) -> pd.DataFrame:
    """One row per (dataset, count): as read, as stated in PROVENANCE.md, and after cleaning."""
    cleaned = {
        "homedepot": {"judgments": len(hd.judgments), "queries": len(hd.queries), "products": len(hd.products)},
        "amazon-office": {"interactions": len(office.interactions), "users": office.interactions[C.COL_USER].nunique(),
                          "items": len(office.items)},
    }
    rows = [{"dataset": ds, "count": name, "as read": value, "PROVENANCE.md": PROVENANCE_COUNTS[ds][name],
             "after cleaning": cleaned[ds][name]}
            for ds, counts in raw_counts(hd, office).items() for name, value in counts.items()]
    return pd.DataFrame(rows)


def search_split_summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Queries, judgments, distinct products and mean relevance per search split."""
    rows = []
    for split in SPLITS:
        j = frames[f"homedepot/judgments_{split}"]
        rows.append({"split": split, "queries": j[C.COL_QUERY_ID].nunique(), "judgments": len(j),
                     "products": j[C.COL_PRODUCT_ID].nunique(), "mean relevance": j[C.COL_RELEVANCE].mean()})
    return pd.DataFrame(rows)


def shared_normalized_queries(frames: dict[str, pd.DataFrame]) -> int:
    """Normalised query texts that occur in more than one search split (must be 0)."""
    queries = frames["homedepot/queries"]
    keys = queries.assign(key=queries[C.COL_QUERY].map(normalize_query)).groupby("key")[C.COL_SPLIT].nunique()
    return int((keys > 1).sum())


def rec_split_summary(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Events, users, items and test/valid items unseen in train, per recommendation split."""
    rows = []
    for kind in ("loo", "temporal"):
        train_items = set(frames[f"office/{kind}_train"][C.COL_ITEM])
        for split in SPLITS:
            part = frames[f"office/{kind}_{split}"]
            rows.append({"protocol": kind, "split": split, "events": len(part), "users": part[C.COL_USER].nunique(),
                         "items": part[C.COL_ITEM].nunique(),
                         "items unseen in train": int((~part[C.COL_ITEM].drop_duplicates().isin(train_items)).sum()),
                         "first day": pd.to_datetime(part[C.COL_TIMESTAMP].min(), unit="s").date(),
                         "last day": pd.to_datetime(part[C.COL_TIMESTAMP].max(), unit="s").date()})
    return pd.DataFrame(rows)
