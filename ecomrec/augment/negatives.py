"""Negative sampling for contrastive training: uniform, popularity^α, BM25-hard, dense-hard with a
false-negative margin, and adversarial near-misses (one attribute of the positive swapped)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec.augment.attributes import BrandLexicon, swap_attribute
from ecomrec.models.search import BM25Index, DenseIndex


def _check(positives: np.ndarray, catalogue: np.ndarray, n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(np.unique(catalogue)) < 2:
        raise ValueError("the catalogue needs at least two items to sample a negative")


def uniform_negatives(positives: Sequence, catalogue: Sequence, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` catalogue ids per positive, uniformly at random, never the positive itself."""
    return popularity_negatives(positives, catalogue, np.zeros(len(catalogue)), 0.0, n, rng)


def popularity_probabilities(counts: Sequence[float], alpha: float) -> np.ndarray:
    """Sampling probabilities p_i ∝ (count_i + 1)^α (add-one, so unseen items keep a chance; α=0 is uniform)."""
    weights = (np.asarray(counts, dtype=np.float64) + 1.0) ** alpha
    return weights / weights.sum()


def popularity_negatives(positives: Sequence, catalogue: Sequence, counts: Sequence[float], alpha: float, n: int,
                         rng: np.random.Generator) -> np.ndarray:
    """`n` ids per positive drawn with p ∝ (count+1)^α, redrawing any that equal the positive."""
    positives, catalogue = np.asarray(positives), np.asarray(catalogue)
    _check(positives, catalogue, n)
    p = popularity_probabilities(counts, alpha)
    draws = catalogue[rng.choice(len(catalogue), size=(len(positives), n), p=p)]
    clash = draws == positives[:, None]
    while clash.any():
        draws[clash] = catalogue[rng.choice(len(catalogue), size=int(clash.sum()), p=p)]
        clash = draws == positives[:, None]
    return draws


def bm25_hard_negatives(queries: Sequence[str], known_positives: Sequence[set], index: BM25Index, n: int,
                        depth: int = 50) -> list[list]:
    """The `n` best BM25 results per query that are not among its known positives (score > 0 only)."""
    retrieved, scores = index.search(queries, k=depth)
    return [[c for c, s in zip(row, row_scores) if s > 0 and c not in bad][:n]
            for row, row_scores, bad in zip(retrieved, scores, known_positives)]


def margin_filter(positive_scores: np.ndarray, candidate_scores: np.ndarray, margin: float) -> np.ndarray:
    """True where a candidate scores at most `positive - margin`: closer ones are likely unlabelled positives."""
    return candidate_scores <= positive_scores[:, None] - margin


def dense_hard_negatives(query_embeddings: np.ndarray, positive_embeddings: np.ndarray,
                         known_positives: Sequence[set], index: DenseIndex, n: int, margin: float = 0.05,
                         depth: int = 50) -> list[list]:
    """The `n` most similar catalogue items per query that are not known positives and fall outside the
    false-negative margin (cosine ≤ cos(query, positive) − margin), as in sentence-transformers'
    `mine_hard_negatives(..., absolute_margin=margin, sampling_strategy="top")`."""
    retrieved, scores = index.search(query_embeddings, k=depth)
    positive_scores = np.einsum("ij,ij->i", query_embeddings, positive_embeddings)
    allowed = margin_filter(positive_scores, scores, margin)
    return [[c for c, ok in zip(row, keep) if ok and c not in bad][:n]
            for row, keep, bad in zip(retrieved, allowed, known_positives)]


def attribute_swap_negatives(titles: Sequence[str], rng: np.random.Generator,
                             brands: BrandLexicon | None = None) -> pd.DataFrame:
    """For each positive title, a near-miss title with exactly one attribute changed (None if it has none)."""
    swaps = [swap_attribute(t, rng, brands) for t in titles]
    return pd.DataFrame({"negative": [s[0] if s else None for s in swaps],
                         "attribute": [s[1] if s else None for s in swaps]})


def triplets(anchors: Sequence[str], positives: Sequence[str], negatives: Sequence[str], **provenance):
    """A Hugging Face `datasets.Dataset` of (anchor, positive, negative) plus provenance columns.

    Each provenance value is a scalar (same for every row) or a sequence (one per row), e.g.
    source="real"/"synthetic", generator=..., filter_score=..., negative_strategy=....
    """
    from datasets import Dataset

    n = len(anchors)
    if not len(positives) == len(negatives) == n:
        raise ValueError(f"lengths differ: {n} anchors, {len(positives)} positives, {len(negatives)} negatives")
    columns = {"anchor": list(anchors), "positive": list(positives), "negative": list(negatives)}
    for name, value in provenance.items():
        column = list(value) if isinstance(value, (list, tuple, np.ndarray, pd.Series)) else [value] * n
        if len(column) != n:
            raise ValueError(f"provenance column {name!r} has {len(column)} values for {n} rows")
        columns[name] = column
    return Dataset.from_dict(columns)
