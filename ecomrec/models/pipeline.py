"""The search pipeline `04` selects on valid and `05` and `07` reuse: BM25 and a dense model fused, then re-ranked.

Stage 1 fuses the two first stages by a weighted sum of per-query min-max scaled scores over the union of
their lists, $s = w\\,\\tilde s_{\\text{dense}} + (1 - w)\\,\\tilde s_{\\text{BM25}}$. Stage 2 re-scores the fused
top `depth` with a cross-encoder and interpolates, $(1 - v)\\,\\tilde s_{\\text{fused}} + v\\,\\tilde s_{\\text{cross}}$
(`reranker.interpolate`). $w$, `depth` and $v$ are chosen on valid; the choice is saved as JSON next to the
models, so a later chapter runs the very pipeline `04` measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ecomrec.models.reranker import interpolate
from ecomrec.models.retrieval import evaluate_run, fuse_runs

#: the dense weights a fusion is chosen from: 0, 0.1, …, 1
FUSION_WEIGHTS = tuple(np.round(np.linspace(0.0, 1.0, 11), 1).tolist())


def fuse(bm25: pd.DataFrame, dense: pd.DataFrame, dense_weight: float) -> pd.DataFrame:
    """Weighted min-max fusion of a BM25 run and a dense run (w = 1: dense alone over the union of both lists)."""
    if not 0 <= dense_weight <= 1:
        raise ValueError(f"dense_weight must lie in [0, 1], got {dense_weight}")
    return fuse_runs({"bm25": bm25, "dense": dense}, weights={"bm25": 1.0 - dense_weight, "dense": dense_weight})


def fuse_lists(bm25_ids: np.ndarray, bm25_scores: np.ndarray, dense_ids: np.ndarray, dense_scores: np.ndarray,
               dense_weight: float) -> tuple[np.ndarray, np.ndarray]:
    """One query's `fuse` without pandas (a served request's path): the union of both lists, best first (ties:
    lower id first), with the same scores as `fuse`."""
    fused: dict = {}
    for ids, scores, weight in ((bm25_ids, bm25_scores, 1.0 - dense_weight), (dense_ids, dense_scores, dense_weight)):
        scores = np.asarray(scores, dtype=float)
        if len(scores) != len(ids):
            raise ValueError(f"{len(ids)} ids for {len(scores)} scores")
        if not len(scores):
            continue
        span = scores.max() - scores.min()
        for product, part in zip(np.asarray(ids).tolist(), (weight * (scores - scores.min()) / (span if span > 0 else 1.0)).tolist()):
            fused[product] = fused.get(product, 0.0) + part
    ids, scores = np.array(list(fused)), np.array(list(fused.values()), dtype=float)
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def choose_fusion(bm25: pd.DataFrame, dense: pd.DataFrame, qrels: pd.DataFrame, weights: Sequence[float]) -> pd.DataFrame:
    """Valid NDCG@10 of every dense weight: the grid the fusion weight is chosen from, best first (ties: the
    weight listed first)."""
    rows = [{"dense_weight": float(w), "ndcg@10": float(evaluate_run(qrels, fuse(bm25, dense, w))["ndcg@10"].mean())}
            for w in weights]
    return pd.DataFrame(rows).sort_values("ndcg@10", ascending=False, kind="mergesort").reset_index(drop=True)


@dataclass(frozen=True)
class SearchPipeline:
    """BM25 + dense fusion weight, cross-encoder re-rank depth and interpolation weight, as chosen on valid."""

    dense_weight: float
    depth: int
    rerank_weight: float

    def __post_init__(self) -> None:
        if not (0 <= self.dense_weight <= 1 and 0 <= self.rerank_weight <= 1) or self.depth < 1:
            raise ValueError(f"weights must lie in [0, 1] and depth be >= 1: {self}")

    def first_stage(self, bm25: pd.DataFrame, dense: pd.DataFrame) -> pd.DataFrame:
        return fuse(bm25, dense, self.dense_weight)

    def rerank(self, fused: pd.DataFrame, cross_scores: pd.DataFrame) -> pd.DataFrame:
        """The fused run's top `depth`, interpolated with `cross_scores` (a run holding a cross-encoder score for
        at least those pairs)."""
        return interpolate(fused, cross_scores, self.rerank_weight, self.depth)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SearchPipeline":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no saved search pipeline (run 04 first)")
        values = json.loads(path.read_text())
        return cls(float(values["dense_weight"]), int(values["depth"]), float(values["rerank_weight"]))
