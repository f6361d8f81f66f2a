"""Home Depot product search relevance (Kaggle 2016): real queries, product titles, graded judgments."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ecomrec import config as C
from ecomrec.data import schema
from ecomrec.data.clean import CleaningLog, average_duplicates, normalize_query, normalize_text
from ecomrec.data.errors import DataFormatError
from ecomrec.data.sources import HOMEDEPOT_TRAIN, locate

RAW_COLUMNS = ("id", "product_uid", "product_title", "search_term", "relevance")
ENCODING = "latin-1"  # the competition's CSV is not UTF-8


@dataclass
class HomeDepot:
    """Cleaned Home Depot data: one row per query, per product, per (query, product) judgment."""

    raw: pd.DataFrame
    queries: pd.DataFrame  # query_id, query
    products: pd.DataFrame  # product_id, title
    judgments: pd.DataFrame  # query_id, product_id, relevance (mean), n_judgments
    log: CleaningLog


def read_homedepot_csv(path: str | Path) -> pd.DataFrame:
    """Read the competition's train.csv, zipped (the Kaggle archive) or plain, and check its columns."""
    path = Path(path)
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.endswith(".csv")]
                if len(members) != 1:
                    raise DataFormatError(f"{path}: expected one .csv member in the archive, found {archive.namelist()}")
                with archive.open(members[0]) as fh:
                    raw = pd.read_csv(fh, encoding=ENCODING)
        else:
            raw = pd.read_csv(path, encoding=ENCODING)
    except zipfile.BadZipFile as err:
        raise DataFormatError(f"{path} is not a valid zip archive ({err}); download train.csv.zip again") from err
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, zlib.error, EOFError) as err:
        raise DataFormatError(f"{path} could not be parsed as the competition CSV: {err}") from err
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing}; expected {list(RAW_COLUMNS)}, found {list(raw.columns)}")
    ids = pd.to_numeric(raw["product_uid"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any():
        first = raw.loc[ids.isna() | (ids != ids.round()), "product_uid"].iloc[0]
        raise DataFormatError(f"{path}: product_uid must be whole numbers, found {first!r}")
    grades = pd.to_numeric(raw["relevance"], errors="coerce")
    malformed = grades.isna() & raw["relevance"].notna()  # an empty grade is missing (cleaning drops it), text is wrong
    if malformed.any():
        raise DataFormatError(f"{path}: relevance must be a number, found {raw.loc[malformed, 'relevance'].iloc[0]!r}")
    return raw


def _canonical_titles(frame: pd.DataFrame) -> pd.DataFrame:
    """One title per product: the most frequent normalised title; ties go to the alphabetically first."""
    counts = frame.groupby([C.COL_PRODUCT_ID, C.COL_TITLE]).size().rename("n").reset_index()
    counts = counts.sort_values([C.COL_PRODUCT_ID, "n", C.COL_TITLE], ascending=[True, False, True], kind="mergesort")
    return counts.drop_duplicates(C.COL_PRODUCT_ID)[[C.COL_PRODUCT_ID, C.COL_TITLE]].reset_index(drop=True)


def clean_homedepot(raw: pd.DataFrame, log: CleaningLog | None = None) -> HomeDepot:
    """Normalise text, drop empty or out-of-range rows, merge duplicate judgments, and assign ids."""
    log = log if log is not None else CleaningLog()
    name = "homedepot"
    frame = pd.DataFrame({
        C.COL_PRODUCT_ID: raw["product_uid"].astype("int64"),
        C.COL_TITLE: raw["product_title"].map(normalize_text).astype("str"),
        C.COL_QUERY: raw["search_term"].map(normalize_query).astype("str"),
        C.COL_RELEVANCE: pd.to_numeric(raw["relevance"], errors="coerce").astype("float64"),
    })
    n = len(frame)
    frame = frame[(frame[C.COL_TITLE] != "") & (frame[C.COL_QUERY] != "")]
    log.add(name, "drop empty title or query", n, len(frame), "after HTML unescape + NFKC + whitespace")
    n = len(frame)
    frame = frame[frame[C.COL_RELEVANCE].between(1.0, 3.0)]
    log.add(name, "drop relevance outside 1-3 or missing", n, len(frame))

    n_titles = frame.groupby(C.COL_PRODUCT_ID)[C.COL_TITLE].nunique()
    products = _canonical_titles(frame)
    log.add(name, "one title per product", int(n_titles.sum()), len(products),
            f"{int((n_titles > 1).sum())} products had several titles; kept the most frequent")

    queries = pd.DataFrame({C.COL_QUERY: sorted(frame[C.COL_QUERY].unique())})
    queries.insert(0, C.COL_QUERY_ID, pd.RangeIndex(len(queries), dtype="int64"))
    queries[C.COL_QUERY] = queries[C.COL_QUERY].astype("str")
    frame = frame.merge(queries, on=C.COL_QUERY, how="left")
    n = len(frame)
    judgments = average_duplicates(frame, [C.COL_QUERY_ID, C.COL_PRODUCT_ID], C.COL_RELEVANCE)
    log.add(name, "average duplicate (query, product) judgments", n, len(judgments),
            "duplicates appear once queries are normalised (case, spaces)")

    schema.check_frame(queries, schema.QUERIES)
    schema.check_frame(products, schema.PRODUCTS)
    schema.check_frame(judgments, schema.JUDGMENTS)
    schema.check_references(judgments, C.COL_PRODUCT_ID, products, C.COL_PRODUCT_ID, "judgments→products")
    schema.check_references(judgments, C.COL_QUERY_ID, queries, C.COL_QUERY_ID, "judgments→queries")
    return HomeDepot(raw=raw, queries=queries, products=products, judgments=judgments, log=log)


def load_homedepot(data_dir: str | Path | None = None, verify: bool | None = None) -> HomeDepot:
    """Locate (and checksum) homedepot/train.csv.zip in the data directory, read and clean it."""
    path = locate(HOMEDEPOT_TRAIN, C.resolve_data_dir(data_dir), verify=verify)
    return clean_homedepot(read_homedepot_csv(path))
