"""Quality filters for synthetic queries: length, de-duplication, and round-trip consistency.

Round-trip consistency (as in doc2query--/InPars-style filtering): a query generated from product p is
kept only if a retriever, given the query, ranks p in its top k. A query that cannot find its own
product is unlikely to be a good training example for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.models.search import BM25Index, DenseIndex, encode, rank_of

REASONS = ("empty", "too short", "too long", "duplicate", "failed round trip", "kept")


def explode_generated(product_ids, titles, generated: list[list[str]], generator: str) -> pd.DataFrame:
    """One row per (product, generated query), with the generator's name."""
    rows = [(pid, title, query, generator) for pid, title, queries in zip(product_ids, titles, generated)
            for query in queries]
    frame = pd.DataFrame(rows, columns=[C.COL_PRODUCT_ID, C.COL_TITLE, C.COL_QUERY, "generator"])
    return frame.astype({C.COL_QUERY: "str", "generator": "str"})


def filter_queries(candidates: pd.DataFrame, bm25: BM25Index, dense: DenseIndex | None = None, encoder=None,
                   k: int = 10, min_words: int = 1, max_words: int = 8) -> pd.DataFrame:
    """Annotate each candidate with bm25_rank, dense_rank (0 = not in top k), keep and the reason.

    Checks run in order and a query is charged to the first it fails: empty, length, duplicate of an
    earlier query for the same product, round trip (kept if BM25 *or* the dense model ranks the
    source product in the top k; the dense model runs only on queries BM25 missed, to save time).
    """
    out = candidates.reset_index(drop=True).copy()
    words = out[C.COL_QUERY].str.split().str.len().fillna(0)
    reason = np.full(len(out), "kept", dtype=object)
    duplicate = out.duplicated([C.COL_PRODUCT_ID, "generator", C.COL_QUERY])
    for mask, label in ((duplicate, "duplicate"), (words > max_words, "too long"),
                        (words < min_words, "too short"), (words == 0, "empty")):
        reason[np.asarray(mask)] = label
    todo = np.flatnonzero(reason == "kept")
    out["bm25_rank"] = 0
    out["dense_rank"] = 0
    # generated queries repeat across products ("led lights", "{brand} {type}"; about 40 % of a full run's
    # candidates): each retriever searches each distinct string once, and its list is ranked for every source product
    if len(todo):
        unique, inverse = np.unique(out.loc[todo, C.COL_QUERY].to_numpy(dtype=str), return_inverse=True)
        retrieved, scores = bm25.search(unique.tolist(), k=k)
        out.loc[todo, "bm25_rank"] = rank_of(retrieved[inverse], out.loc[todo, C.COL_PRODUCT_ID].to_numpy(),
                                             valid=scores[inverse] > 0)
    missed = todo[out.loc[todo, "bm25_rank"].to_numpy() == 0]
    if dense is not None and len(missed):
        if encoder is None:
            raise ValueError("a dense index needs the encoder that embeds the queries")
        unique, inverse = np.unique(out.loc[missed, C.COL_QUERY].to_numpy(dtype=str), return_inverse=True)
        retrieved, _ = dense.search(encode(encoder, unique.tolist()), k=k)
        out.loc[missed, "dense_rank"] = rank_of(retrieved[inverse], out.loc[missed, C.COL_PRODUCT_ID].to_numpy())
    failed = (reason == "kept") & (out["bm25_rank"].to_numpy() == 0) & (out["dense_rank"].to_numpy() == 0)
    reason[failed] = "failed round trip"
    out["reason"] = pd.Categorical(reason, categories=REASONS)
    out["keep"] = out["reason"] == "kept"
    return out


def unfiltered(candidates: pd.DataFrame) -> pd.DataFrame:
    """What a writer produced, before the quality filter: every non-empty query, each (product, generator, query)
    once. Length and round trip are the filter; an empty string is no query and a repeat adds no new pair.
    `candidates` is `filter_queries` output (any extra columns are kept) or raw `explode_generated` rows."""
    queries = candidates[C.COL_QUERY].fillna("").astype(str)
    written = queries.str.strip() != ""
    repeat = candidates.assign(**{C.COL_QUERY: queries}).duplicated([C.COL_PRODUCT_ID, "generator", C.COL_QUERY])
    return candidates[written & ~repeat]


def keep_rates(filtered: pd.DataFrame) -> pd.DataFrame:
    """Per generator: share of candidates removed by each check, and the share kept."""
    table = pd.crosstab(filtered["generator"], filtered["reason"], normalize="index")
    return table.reindex(columns=list(REASONS), fill_value=0.0)
