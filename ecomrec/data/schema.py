"""Declarative schema checks on loaded frames: types, ranges, nulls, uniqueness, references."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from pandas.api import types as ptypes

from ecomrec import config as C
from ecomrec.data.errors import SchemaError

_KIND_CHECKS = {
    "int": ptypes.is_integer_dtype,
    "float": ptypes.is_float_dtype,
    "str": ptypes.is_string_dtype,
    "datetime": ptypes.is_datetime64_any_dtype,
    "object": lambda dtype: True,
}


@dataclass(frozen=True)
class Col:
    """One column: its kind ('int', 'float', 'str', 'datetime', 'object'), nullability and range."""

    name: str
    kind: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    nonempty: bool = False  # for 'str': no empty strings


@dataclass(frozen=True)
class Schema:
    """A frame's columns and the column set that must be unique (its key)."""

    name: str
    columns: tuple[Col, ...]
    key: tuple[str, ...] = ()


def check_frame(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Return `df` unchanged if it satisfies `schema`, else raise SchemaError listing every violation."""
    problems: list[str] = []
    missing = [c.name for c in schema.columns if c.name not in df.columns]
    if missing:
        problems.append(f"missing columns {missing} (has {list(df.columns)})")
    for col in schema.columns:
        if col.name not in df.columns:
            continue
        series = df[col.name]
        if not _KIND_CHECKS[col.kind](series.dtype):
            problems.append(f"column {col.name!r} has dtype {series.dtype}, expected {col.kind}")
            continue
        n_null = int(series.isna().sum())
        if n_null and not col.nullable:
            problems.append(f"column {col.name!r} has {n_null} nulls")
        values = series.dropna()
        if col.min is not None and (values < col.min).any():
            problems.append(f"column {col.name!r} has {(values < col.min).sum()} values below {col.min}")
        if col.max is not None and (values > col.max).any():
            problems.append(f"column {col.name!r} has {(values > col.max).sum()} values above {col.max}")
        if col.nonempty and (values.astype(str).str.len() == 0).any():
            problems.append(f"column {col.name!r} has {(values.astype(str).str.len() == 0).sum()} empty strings")
    if schema.key and not missing:
        n_dup = int(df.duplicated(list(schema.key)).sum())
        if n_dup:
            problems.append(f"{n_dup} duplicate rows on key {list(schema.key)}")
    if problems:
        raise SchemaError(f"{schema.name}: " + "; ".join(problems))
    return df


def check_references(child: pd.DataFrame, column: str, parent: pd.DataFrame, parent_column: str, name: str) -> None:
    """Raise SchemaError if some `child[column]` values are absent from `parent[parent_column]`."""
    orphans = ~child[column].isin(parent[parent_column])
    if orphans.any():
        examples = child.loc[orphans, column].drop_duplicates().head(5).tolist()
        raise SchemaError(f"{name}: {int(orphans.sum())} rows reference unknown {parent_column} (e.g. {examples})")


PRODUCTS = Schema("homedepot products", (
    Col(C.COL_PRODUCT_ID, "int", min=0), Col(C.COL_TITLE, "str", nonempty=True)), key=(C.COL_PRODUCT_ID,))
QUERIES = Schema("homedepot queries", (
    Col(C.COL_QUERY_ID, "int", min=0), Col(C.COL_QUERY, "str", nonempty=True)), key=(C.COL_QUERY_ID,))
JUDGMENTS = Schema("homedepot judgments", (
    Col(C.COL_QUERY_ID, "int", min=0), Col(C.COL_PRODUCT_ID, "int", min=0),
    Col(C.COL_RELEVANCE, "float", min=1.0, max=3.0), Col("n_judgments", "int", min=1)),
    key=(C.COL_QUERY_ID, C.COL_PRODUCT_ID))
ITEMS = Schema("office items", (
    Col(C.COL_ITEM, "str", nonempty=True), Col(C.COL_TITLE, "str"), Col("brand", "str"),
    Col("category", "str", nonempty=True), Col("top_category", "str", nonempty=True), Col("description", "str")),
    key=(C.COL_ITEM,))
INTERACTIONS = Schema("office interactions", (
    Col(C.COL_USER, "str", nonempty=True), Col(C.COL_ITEM, "str", nonempty=True),
    Col(C.COL_RATING, "float", min=1.0, max=5.0), Col(C.COL_TIMESTAMP, "int", min=0)),
    key=(C.COL_USER, C.COL_ITEM))
