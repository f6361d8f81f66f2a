"""A cross-encoder trained on its first stage's own candidates, selected on valid re-ranking NDCG@10.

A re-ranker sees only what the first stage returns, so that is what it must learn to order. Its training set:

* every training judgment, with the grade as a soft label $y = (g - 1)/2 \\in [0, 1]$;
* **hard negatives** mined from the first stage's top $k$ for each training query: unjudged products, minus
  those scoring within `margin` of the query's best relevant product (likely relevant but never judged:
  a false negative would teach the model to demote exactly what it should find), sampled per query;
* a few **uniform random** catalogue products per query (so plainly unrelated products stay at the bottom),

all unjudged ones labelled 0. Loss: binary cross-entropy on the soft labels. Model selection, the re-rank
depth and the weight of an optional interpolation with the first-stage score are all chosen on valid.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ecomrec import config as C
from ecomrec.models.loop import LoopFit, adamw, train_until_valid
from ecomrec.models.retrieval import evaluate_run, fuse_runs, is_judged, top_k


def mine_hard_negatives(run: pd.DataFrame, judged: pd.DataFrame, positive_score: pd.Series, margin: float,
                        per_query: int, seed: int = C.SEED) -> pd.DataFrame:
    """(query_id, product_id) hard negatives from a first-stage `run` (query_id, product_id, score).

    Per query: candidates not in `judged` (query_id, product_id) whose score is below the query's
    `positive_score` (its best relevant product's score, indexed by query id) minus `margin`; `per_query` of
    them drawn uniformly (seeded). Queries without a positive score get none.
    """
    if margin < 0 or per_query < 1:
        raise ValueError(f"margin must be >= 0 and per_query >= 1, got {margin} and {per_query}")
    candidates = run[~is_judged(run, judged)]
    ceiling = candidates[C.COL_QUERY_ID].map(positive_score) - margin
    candidates = candidates[candidates["score"] < ceiling]
    rng = np.random.default_rng(seed)
    shuffled = candidates.assign(_draw=rng.random(len(candidates))).sort_values([C.COL_QUERY_ID, "_draw"])
    return shuffled.groupby(C.COL_QUERY_ID, sort=False).head(per_query)[[C.COL_QUERY_ID, C.COL_PRODUCT_ID]].reset_index(drop=True)


def bce_batch_loss(cross, queries: Sequence[str], titles: Sequence[str], labels: Sequence[float], *,
                   bf16: bool = False) -> Callable[[np.ndarray], torch.Tensor]:
    """`loss(rows)`: binary cross-entropy of the CrossEncoder's logits for the pairs (queries[i], titles[i]) of
    `rows` against their soft labels (float32, in [0, 1]); `bf16`: the forward under bfloat16 autocast, the loss
    in float32. `train_reranker` steps on it; `scripts/bench_optimiser.py` times it."""
    labels = np.asarray(labels, dtype=np.float32)

    def loss(rows: np.ndarray) -> torch.Tensor:
        inputs = cross.preprocess([(queries[i], titles[i]) for i in rows])
        inputs = {k: v.to(cross.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.autocast(cross.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = cross(inputs)["scores"].view(-1)
        logits = logits.float()
        return nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels[rows]).to(logits.device))

    return loss


def train_reranker(cross, queries: Sequence[str], titles: Sequence[str], labels: Sequence[float],
                   score_valid: Callable[[object], float], *, batch_size: int = 32, learning_rate: float = 5e-5,
                   eval_every: int = 200, patience: int = 3, max_epochs: float = 1.0, max_seconds: float | None = None,
                   bf16: bool = False, seed: int = C.SEED, progress: bool = False) -> LoopFit:
    """Fine-tune a CrossEncoder (one output) on (queries[i], titles[i], labels[i] ∈ [0, 1]) with binary
    cross-entropy on its logit; `score_valid(cross)` every `eval_every` steps, the best weights restored.
    `bf16`: the transformer's forward under bfloat16 autocast (the loss stays float32)."""
    labels = np.asarray(labels, dtype=np.float32)
    if not len(queries) == len(titles) == len(labels):
        raise ValueError(f"{len(queries)} queries, {len(titles)} titles, {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() > 1):
        raise ValueError("labels must lie in [0, 1]")

    batch_loss = bce_batch_loss(cross, queries, titles, labels, bf16=bf16)
    optimiser = adamw([p for p in cross.parameters() if p.requires_grad], lr=learning_rate)
    cross.train()
    return train_until_valid({"cross": cross}, optimiser, len(labels), batch_loss, lambda: score_valid(cross),
                             batch_size=batch_size, eval_every=eval_every, patience=patience, max_epochs=max_epochs,
                             max_seconds=max_seconds, seed=seed, progress=progress, desc="cross-encoder steps")


def interpolate(first: pd.DataFrame, reranked: pd.DataFrame, weight: float, depth: int) -> pd.DataFrame:
    """The top `depth` of a first-stage run re-scored as (1 − w)·minmax(first) + w·minmax(cross) per query
    (w = 1: the cross-encoder alone; w = 0: the first stage). `reranked` holds cross-encoder scores for at least
    those pairs."""
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    top = top_k(first, depth)
    cross = top[[C.COL_QUERY_ID, C.COL_PRODUCT_ID]].merge(reranked, on=[C.COL_QUERY_ID, C.COL_PRODUCT_ID], how="left")
    if cross["score"].isna().any():
        raise ValueError("the re-ranked run lacks cross-encoder scores for some of the top-depth pairs")
    return fuse_runs({"first": top, "cross": cross}, weights={"first": 1.0 - weight, "cross": weight})


def choose_rerank(first: pd.DataFrame, reranked: pd.DataFrame, qrels: pd.DataFrame, depths: Sequence[int],
                  weights: Sequence[float]) -> pd.DataFrame:
    """Valid NDCG@10 of every (depth, weight): the grid a re-ranking setting is chosen from, best first."""
    rows = [{"depth": d, "weight": w, "ndcg@10": float(evaluate_run(qrels, interpolate(first, reranked, w, d))["ndcg@10"].mean())}
            for d in depths for w in weights]
    return pd.DataFrame(rows).sort_values(["ndcg@10", "depth"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
