"""How good are generated queries? Measures against the real queries of the same products.

Every function takes plain strings, so templates, the from-scratch model and an LLM are measured the same
way. The round-trip rate comes from `filters.filter_queries` (its `bm25_rank` / `dense_rank` columns).

* `chrf`: character n-gram F-score (sacrebleu's chrF, computed locally) of a generated query against the
  product's real queries; sacrebleu scores against the best-matching reference.
* `nearest_real_cosine`: embedding cosine of a generated query to the closest real query of its product.
* `distinct_n`: distinct word n-grams over all n-grams of a set of queries (diversity; 1.0 = no repeats).
* `copies_title`: the query is a contiguous run of the title's words (nothing of its own).
* `invented_numbers`: numbers in the query that the title does not contain (an invented size or count).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np
import pandas as pd

_NUMBER = re.compile(r"\d+(?:[.,/]\d+)*")
_WORD = re.compile(r"[a-z0-9]+(?:[./-][a-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased word tokens; numbers with decimal points, fractions or hyphens stay whole ('1/2', '2.5')."""
    return _WORD.findall(str(text).lower())


def numbers(text: str) -> set[str]:
    """The numbers written in `text` ('1/2', '2.5', '3,000' → '3000')."""
    return {n.replace(",", "") for n in _NUMBER.findall(str(text))}


def invented_numbers(query: str, title: str) -> bool:
    """True when the query holds a number the title does not."""
    return bool(numbers(query) - numbers(title))


def copies_title(query: str, title: str) -> bool:
    """True when the query's words are a contiguous run of the title's words (an empty query is no copy)."""
    q, t = words(query), words(title)
    if not q or len(q) > len(t):
        return False
    return any(t[i:i + len(q)] == q for i in range(len(t) - len(q) + 1))


def distinct_n(queries: Sequence[str], n: int = 2) -> float:
    """Distinct word n-grams / all word n-grams over `queries` (NaN when there is no n-gram at all)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    grams = [tuple(w[i:i + n]) for w in map(words, queries) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else float("nan")


def chrf(queries: Sequence[str], references: Sequence[Sequence[str]]) -> np.ndarray:
    """Sentence chrF (0-100) of each query against its own list of real queries (best reference counts)."""
    from sacrebleu.metrics import CHRF

    if len(queries) != len(references):
        raise ValueError(f"{len(queries)} queries but {len(references)} reference lists")
    metric = CHRF()
    out = np.empty(len(queries))
    for i, (query, refs) in enumerate(zip(queries, references)):
        if not len(refs):
            raise ValueError(f"query {i} ({query!r}) has no reference query")
        out[i] = metric.sentence_score(str(query), [str(r) for r in refs]).score
    return out


def nearest_real_cosine(encoder, queries: Sequence[str], references: Sequence[Sequence[str]],
                        batch_size: int = 128) -> np.ndarray:
    """Cosine of each query's embedding to the nearest embedding among its own reference queries."""
    from ecomrec.models.search import encode

    if len(queries) != len(references):
        raise ValueError(f"{len(queries)} queries but {len(references)} reference lists")
    if any(not len(refs) for refs in references):
        raise ValueError("every query needs at least one reference query")
    distinct_refs = sorted({str(r) for refs in references for r in refs})
    row_of = {r: i for i, r in enumerate(distinct_refs)}
    unique_queries, inverse = np.unique(np.asarray([str(q) for q in queries], dtype=object), return_inverse=True)
    q = encode(encoder, list(unique_queries), batch_size=batch_size)[inverse]
    r = encode(encoder, distinct_refs, batch_size=batch_size)
    return np.array([float((r[[row_of[str(x)] for x in refs]] @ q[i]).max()) for i, refs in enumerate(references)])


def quality_table(generated: pd.DataFrame, references: dict, encoder=None, query_col: str = "query",
                  title_col: str = "title", product_col: str = "product_id", group_col: str = "generator") -> pd.DataFrame:
    """One row per generator: queries, mean words, chrF, nearest-real cosine (given an encoder), distinct-1/2,
    copy share and invented-number share, over the generated rows whose product has reference queries.

    `references` maps a product id to the list of its real (held-out) queries.
    """
    missing = {query_col, title_col, product_col, group_col} - set(generated.columns)
    if missing:
        raise KeyError(f"generated queries lack the columns {sorted(missing)}")
    rows = {}
    for name, group in generated[generated[product_col].isin(list(references))].groupby(group_col, sort=False):
        qs, titles = group[query_col].astype(str).tolist(), group[title_col].astype(str).tolist()
        refs = [references[p] for p in group[product_col]]
        row = {"queries": len(qs), "products": group[product_col].nunique(),
               "mean words": float(np.mean([len(words(q)) for q in qs])),
               "chrF": float(chrf(qs, refs).mean())}
        if encoder is not None:
            row["cosine to nearest real"] = float(nearest_real_cosine(encoder, qs, refs).mean())
        row |= {"distinct-1": distinct_n(qs, 1), "distinct-2": distinct_n(qs, 2),
                "copies title": float(np.mean([copies_title(q, t) for q, t in zip(qs, titles)])),
                "invented number": float(np.mean([invented_numbers(q, t) for q, t in zip(qs, titles)]))}
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")
