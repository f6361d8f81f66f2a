"""Amazon product data 2014 (McAuley et al.), Office Products 5-core: ratings with time, item text."""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

from ecomrec import config as C
from ecomrec.data import schema
from ecomrec.data.clean import CleaningLog, drop_duplicate_events, k_core, normalize_text, order_events
from ecomrec.data.errors import DataFormatError
from ecomrec.data.sources import OFFICE_META, OFFICE_REVIEWS, locate

REVIEW_FIELDS = ("reviewerID", "asin", "overall", "unixReviewTime")
CATEGORY_SEP = " > "


@dataclass
class Office:
    """Cleaned Amazon Office data: items with text, and one interaction per (user, item)."""

    raw_reviews: pd.DataFrame
    items: pd.DataFrame  # item_id, title, brand, category, top_category, description
    interactions: pd.DataFrame  # user_id, item_id, rating, timestamp (ordered by user, time, item)
    log: CleaningLog


def iter_records(path: str | Path) -> Iterator[dict]:
    """Yield one dict per line of a (gzipped or plain) JSON-lines file; Python dict literals are accepted.

    The 2014 meta files are Python literals (single quotes), the review files strict JSON.
    """
    path = Path(path)
    with open(path, "rb") as probe:
        is_gzip = probe.read(2) == b"\x1f\x8b"
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    try:
                        record = ast.literal_eval(line)
                    except (ValueError, SyntaxError) as err:
                        raise DataFormatError(f"{path}:{lineno}: neither JSON nor a Python dict literal ({err})") from err
                if not isinstance(record, dict):
                    raise DataFormatError(f"{path}:{lineno}: expected an object, got {type(record).__name__}")
                yield record
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as err:  # zlib.error: a corrupt gzip stream
        raise DataFormatError(f"{path} could not be read as (gzipped) JSON lines: {err}") from err


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Ratings as user_id, item_id, rating, timestamp; review text and other fields are ignored."""
    rows = []
    for rec in iter_records(path):
        missing = [f for f in REVIEW_FIELDS if f not in rec]
        if missing:
            raise DataFormatError(f"{path}: a review lacks fields {missing} (has {sorted(rec)})")
        rows.append((rec["reviewerID"], rec["asin"], rec["overall"], rec["unixReviewTime"]))
    if not rows:
        raise DataFormatError(f"{path} holds no reviews")
    frame = pd.DataFrame(rows, columns=[C.COL_USER, C.COL_ITEM, C.COL_RATING, C.COL_TIMESTAMP])
    for column in (C.COL_RATING, C.COL_TIMESTAMP):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.loc[numbers.isna(), column]
        if len(bad):
            raise DataFormatError(f"{path}: {len(bad)} reviews have a non-numeric {column} "
                                  f"(first: {bad.iloc[0]!r}); expected numbers ('overall', 'unixReviewTime')")
        frame[column] = numbers
    return frame.astype({C.COL_USER: "str", C.COL_ITEM: "str", C.COL_RATING: "float64", C.COL_TIMESTAMP: "int64"})


def _category_path(categories: object) -> list[str]:
    """The first category path rooted at 'Office Products' (else the first path), as a list of names."""
    paths = [p for p in (categories or []) if isinstance(p, (list, tuple)) and p]
    rooted = [p for p in paths if p[0] == "Office Products"]
    chosen = (rooted or paths or [["Office Products"]])[0]
    return [normalize_text(name) for name in chosen]


def read_meta(path: str | Path, asins: set[str] | None = None) -> pd.DataFrame:
    """Item text as item_id, title, brand, category (path), top_category, description; HTML unescaped.

    `asins` keeps only those items (the original meta file covers the whole category, not the 5-core).
    """
    rows = []
    for rec in iter_records(path):
        if "asin" not in rec:
            raise DataFormatError(f"{path}: a meta record lacks 'asin' (has {sorted(rec)})")
        if asins is not None and rec["asin"] not in asins:
            continue
        path_names = _category_path(rec.get("categories"))
        rows.append({
            C.COL_ITEM: rec["asin"],
            C.COL_TITLE: normalize_text(rec.get("title")),
            "brand": normalize_text(rec.get("brand")),
            "category": CATEGORY_SEP.join(path_names),
            "top_category": path_names[1] if len(path_names) > 1 else path_names[0],
            "description": normalize_text(rec.get("description")),
        })
    frame = pd.DataFrame(rows, columns=[C.COL_ITEM, C.COL_TITLE, "brand", "category", "top_category", "description"])
    return frame.astype("str").sort_values(C.COL_ITEM, kind="mergesort").reset_index(drop=True)


def clean_office(reviews: pd.DataFrame, items: pd.DataFrame, kcore: int = 5, log: CleaningLog | None = None) -> Office:
    """Keep rated items with metadata, one event per (user, item), the k-core, in a deterministic order."""
    log = log if log is not None else CleaningLog()
    name = "amazon-office"
    n = len(reviews)
    events = reviews[reviews[C.COL_RATING].between(1.0, 5.0)]
    log.add(name, "drop ratings outside 1-5", n, len(events))
    n = len(events)
    events = events[events[C.COL_ITEM].isin(items[C.COL_ITEM])]
    log.add(name, "drop events of items without metadata", n, len(events))
    n = len(events)
    events = drop_duplicate_events(events, C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP)
    log.add(name, "one event per (user, item), the latest", n, len(events))
    n = len(events)
    events = order_events(k_core(events, C.COL_USER, C.COL_ITEM, kcore), C.COL_USER, C.COL_ITEM, C.COL_TIMESTAMP)
    log.add(name, f"{kcore}-core filter (users and items)", n, len(events))
    items = items[items[C.COL_ITEM].isin(events[C.COL_ITEM])].reset_index(drop=True)
    log.add(name, "items without a title (kept: brand, category and description describe them)",
            len(items), len(items), f"{int((items[C.COL_TITLE] == '').sum())} of {len(items)} items")

    schema.check_frame(items, schema.ITEMS)
    schema.check_frame(events, schema.INTERACTIONS)
    schema.check_references(events, C.COL_ITEM, items, C.COL_ITEM, "interactions→items")
    return Office(raw_reviews=reviews, items=items, interactions=events, log=log)


def load_office(data_dir: str | Path | None = None, kcore: int = 5, verify: bool | None = None) -> Office:
    """Locate (and checksum) the two Office files in the data directory, read and clean them."""
    root = C.resolve_data_dir(data_dir)
    reviews = read_reviews(locate(OFFICE_REVIEWS, root, verify=verify))
    items = read_meta(locate(OFFICE_META, root, verify=verify), asins=set(reviews[C.COL_ITEM]))
    return clean_office(reviews, items, kcore=kcore)
