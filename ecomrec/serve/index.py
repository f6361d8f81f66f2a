"""Approximate nearest-neighbour search (faiss HNSW) over normalised embeddings, and how to judge it.

HNSW builds a layered proximity graph: a query walks greedily from a coarse layer down to the full
graph, keeping the `ef_search` best candidates seen. Larger `ef_search` → higher recall, fewer queries/s.
With L2-normalised vectors, inner product = cosine similarity, so the same ids come back as exact search
would return whenever the graph walk finds them.

Reproducibility: faiss inserts vectors in parallel by default (OpenMP), and the graph then depends on thread
timing, so two builds over the same vectors differ. `HNSWIndex` builds on one thread unless told otherwise:
the same vectors give the same graph, bit for bit (a test checks it), at about twice the build time on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


class HNSWIndex:
    """faiss `IndexHNSWFlat` (inner product) mapping rows back to product ids."""

    def __init__(self, ids: Sequence, embeddings: np.ndarray, neighbours: int = 32, ef_construction: int = 80,
                 ef_search: int = 64, build_threads: int | None = 1):
        """`build_threads`: OpenMP threads for the insertion; 1 (default) makes the build reproducible, None
        uses faiss's default (all cores; faster, but the graph varies from build to build)."""
        import faiss

        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for embeddings of shape {embeddings.shape}")
        self.ids = np.asarray(ids)
        self.index = faiss.IndexHNSWFlat(embeddings.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        threads = faiss.omp_get_max_threads()
        if build_threads is not None:
            faiss.omp_set_num_threads(build_threads)
        try:
            self.index.add(embeddings)
        finally:
            faiss.omp_set_num_threads(threads)
        self.ef_search = ef_search

    def save(self, path: str | Path) -> Path:
        """Write the graph (not the ids: they come from the catalogue) with faiss."""
        import faiss

        from ecomrec.storage import atomic_path

        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, ids: Sequence) -> "HNSWIndex":
        """A saved graph over the catalogue `ids` (in the order it was built from); no rebuild."""
        import faiss

        if not Path(path).is_file():
            raise FileNotFoundError(f"no saved index at {path}")
        index = cls.__new__(cls)
        index.ids, index.index = np.asarray(ids), faiss.read_index(str(path))
        if index.index.ntotal != len(index.ids):
            raise ValueError(f"the saved index holds {index.index.ntotal} vectors for {len(index.ids)} ids")
        return index

    @property
    def ef_search(self) -> int:
        return int(self.index.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        if value < 1:
            raise ValueError("ef_search must be positive")
        self.index.hnsw.efSearch = int(value)

    def search(self, query_embeddings: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids and cosine scores per query, best first (as `DenseIndex.search`).

        The walk keeps max(ef_search, k) candidates: a beam narrower than k cannot hold k results (faiss then
        pads with -1; seen in 07's smoke run, ef_search 10 chosen for recall@10, then a top 100 asked for)."""
        import faiss

        k = min(k, len(self.ids))
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        scores, rows = self.index.search(np.ascontiguousarray(query_embeddings, dtype=np.float32), k, params=params)
        if (rows < 0).any():  # faiss pads with -1 when the walk found fewer than k vectors
            raise RuntimeError(f"HNSW returned fewer than {k} results; raise ef_search (now {self.ef_search})")
        return self.ids[rows], scores


def recall_at_k(approximate: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top-k ids that the approximate top-k also holds."""
    if approximate.shape != exact.shape:
        raise ValueError(f"shapes differ: {approximate.shape} vs {exact.shape}")
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate.tolist(), exact.tolist())]))


def brute_force_top_k(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each query's top-k by inner product, in numpy: the oracle exact search is checked against."""
    scores = np.asarray(queries, dtype=np.float64) @ np.asarray(embeddings, dtype=np.float64).T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_speed_curve(index: HNSWIndex, exact_index, queries: np.ndarray, k: int = 10,
                       ef_values: Sequence[int] = (8, 16, 32, 64, 128, 256)) -> pd.DataFrame:
    """Recall@k and queries/s of a batch search, for `exact_index` (a `DenseIndex`) and for HNSW at each
    `ef_search`. Recall is measured against a float64 numpy search over the exact index's vectors: exact
    search's own recall is measured too (float32 ties can cost it a little), not assumed to be 1."""
    k = min(k, len(index.ids))
    oracle = exact_index.ids[brute_force_top_k(exact_index.embeddings.numpy(), queries, k)]
    start = time.perf_counter()
    exact_ids, _ = exact_index.search(queries, k=k)
    rows = [{"method": "exact", "ef_search": np.nan, "recall@k": recall_at_k(exact_ids, oracle),
             "queries_per_second": len(queries) / (time.perf_counter() - start)}]
    for ef in ef_values:
        index.ef_search = max(ef, k)
        start = time.perf_counter()
        found, _ = index.search(queries, k=k)
        rows.append({"method": "HNSW", "ef_search": index.ef_search, "recall@k": recall_at_k(found, oracle),
                     "queries_per_second": len(queries) / (time.perf_counter() - start)})
    return pd.DataFrame(rows)


def choose_ef_search(curve: pd.DataFrame, target_recall: float) -> tuple[int, bool]:
    """The smallest `ef_search` whose recall reaches `target_recall`, and True; when none does, the largest
    measured (the best recall on offer) and False, so that the caller says the target was missed."""
    hnsw = curve[curve["method"] == "HNSW"]
    if hnsw.empty:
        raise ValueError("the curve has no HNSW rows")
    good = hnsw[hnsw["recall@k"] >= target_recall]
    if len(good):
        return int(good["ef_search"].min()), True
    return int(hnsw["ef_search"].max()), False
