"""Distillation: the cross-encoder teaches the bi-encoder it re-ranks (Margin-MSE, Hofstätter et al. 2020).

A cross-encoder reads query and title together and orders a short list better than a bi-encoder, but it cannot
scan a catalogue. Distillation moves some of that skill into the bi-encoder: for a training query $q$, a
relevant product $p$ and a candidate $n$ from the bi-encoder's own top $k$, the teacher's **margin**
$t(q, p) - t(q, n)$ (its logits) becomes the target of the student's margin,

$$\\mathcal{L} = \\big(\\, s\\,[\\cos(q, d'_p) - \\cos(q, d'_n)] - [t(q, p) - t(q, n)] \\,\\big)^2,$$

with a learnt scale $s$ (the student's cosines live on another scale than the teacher's logits). $s$ starts where
the student's margins before training are as large as the teacher's, $s_0 = \mathrm{rms}(t) / \mathrm{rms}(m_0)$:
a fixed start far from it (say 20 against margins of half a logit) makes the first steps shrink the student's
margins instead of reordering them. The teacher
says *how much* better $p$ is than $n$, where a hard negative only says "worse": a candidate the teacher finds
nearly as good as the positive (an unjudged relevant product) asks for a small margin instead of a push to the
bottom, so the false negatives that the cross-encoder's own mining had to drop by a margin are harmless here.

The student is the query side: the bi-encoder's query tower trains, the catalogue stays the cached vectors of
the bi-encoder before distillation, moved only by a low-rank map $d' = \\mathrm{norm}(d + BAd)$
(`ecomrec.models.query_tower.DocumentMap`). So no catalogue is re-encoded: valid NDCG@10 on the whole catalogue
costs only the valid queries' encodes, and training stops when it stops improving (the best evaluation kept).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ecomrec import config as C
from ecomrec.models.query_tower import QueryTowerFit, cached_documents, embed, fit_against_catalogue
from ecomrec.models.search import encode

POSITIVE, NEGATIVE = "positive_id", "negative_id"


def margin_triples(candidates: pd.DataFrame, positives: pd.DataFrame, positives_per_query: int,
                   negatives_per_query: int, seed: int = C.SEED) -> pd.DataFrame:
    """(query_id, positive_id, negative_id) triples for Margin-MSE.

    Per query of `positives` (query_id, product_id: its relevant judged products): up to `positives_per_query`
    of them and up to `negatives_per_query` of its `candidates` (query_id, product_id: the student's own top k)
    that are not among its relevant products, each drawn uniformly (seeded); every positive is paired with every
    negative. A query without a candidate left gets no triple.
    """
    if positives_per_query < 1 or negatives_per_query < 1:
        raise ValueError(f"positives_per_query and negatives_per_query must be >= 1, got {positives_per_query} and {negatives_per_query}")
    keys = [C.COL_QUERY_ID, C.COL_PRODUCT_ID]
    positives = positives[keys].drop_duplicates()
    rng = np.random.default_rng(seed)

    def draw(frame: pd.DataFrame, per_query: int) -> pd.DataFrame:
        shuffled = frame.assign(_draw=rng.random(len(frame))).sort_values([C.COL_QUERY_ID, "_draw"], kind="mergesort")
        return shuffled.groupby(C.COL_QUERY_ID, sort=False).head(per_query)[keys]

    candidates = candidates[keys].drop_duplicates()
    candidates = candidates[candidates[C.COL_QUERY_ID].isin(positives[C.COL_QUERY_ID])]
    relevant = candidates.merge(positives, on=keys, how="left", indicator=True)["_merge"].eq("both").to_numpy()
    chosen_positives = draw(positives, positives_per_query).rename(columns={C.COL_PRODUCT_ID: POSITIVE})
    chosen_negatives = draw(candidates[~relevant], negatives_per_query).rename(columns={C.COL_PRODUCT_ID: NEGATIVE})
    triples = chosen_positives.merge(chosen_negatives, on=C.COL_QUERY_ID)
    return triples.sort_values([C.COL_QUERY_ID, POSITIVE, NEGATIVE], kind="mergesort").reset_index(drop=True)


def teacher_logits(probabilities: Sequence[float], eps: float = 1e-6) -> np.ndarray:
    """A one-output cross-encoder's logits from its sigmoid scores (what `CrossEncoder.predict` returns), clipped
    to [eps, 1 - eps] first: margins in logits do not saturate the way differences of probabilities do."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1 - eps)
    if np.isnan(p).any():
        raise ValueError("a teacher score is NaN")
    return np.log(p) - np.log1p(-p)


class MarginScale(nn.Module):
    """A learnt positive scale s = exp(log s) between the student's cosines and the teacher's logits."""

    def __init__(self, initial: float):
        super().__init__()
        if initial <= 0:
            raise ValueError(f"the scale must be positive, got {initial}")
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(initial))))

    def forward(self, margin: torch.Tensor) -> torch.Tensor:
        return self.log_scale.exp() * margin


def matched_scale(model, queries: Sequence[str], query_index: np.ndarray, positive_index: np.ndarray,
                  negative_index: np.ndarray, teacher_margin: np.ndarray, documents: np.ndarray) -> float:
    """rms(teacher margins) / rms(the student's cosine margins as it stands, against the normalised `documents`):
    the scale at which the untrained student's margins are as large as the teacher's. Raises if either set of
    margins is all zero."""
    rows = np.unique(query_index)
    q = encode(model, [queries[i] for i in rows])[np.searchsorted(rows, query_index)]
    margin = (q * documents[positive_index]).sum(-1) - (q * documents[negative_index]).sum(-1)
    student, teacher = float(np.sqrt(np.mean(margin ** 2))), float(np.sqrt(np.mean(np.square(teacher_margin))))
    if not (student > 0 and teacher > 0):
        raise ValueError(f"no scale can match the teacher's margins (rms {teacher:.3g}) to the student's (rms {student:.3g})")
    return teacher / student


def train_margin_mse(model, queries: Sequence[str], query_index: Sequence[int], positive_index: Sequence[int],
                     negative_index: Sequence[int], teacher_margin: Sequence[float], catalogue: np.ndarray,
                     score_valid: Callable[[object, np.ndarray], float], *, doc_map_rank: int | None = 32,
                     batch_size: int = 64, learning_rate: float = 3e-5, map_learning_rate: float = 1e-3,
                     initial_scale: float | None = None, eval_every: int = 100, patience: int = 3, max_epochs: float = 3.0,
                     max_seconds: float | None = None, bf16: bool = False, seed: int = C.SEED,
                     progress: bool = False) -> QueryTowerFit:
    """Distil a teacher's margins into `model` (a SentenceTransformer: the query tower) against the fixed cached
    `catalogue` (N × d): triple i is (queries[query_index[i]], catalogue row positive_index[i], row
    negative_index[i]) with target `teacher_margin[i]`.

    `score_valid(model, catalogue_vectors)` (higher is better) is measured before training (step 0) and every
    `eval_every` steps; training stops after `patience` evaluations without a gain, at `max_epochs` passes over
    the triples or after `max_seconds`, and the best evaluation's weights (query tower, document map) are
    restored — a distillation that never helps on valid returns the student unchanged. `initial_scale` None: the
    scale starts at rms(teacher margins) / rms(the student's margins before training) (`matched_scale`).
    """
    # writable copies (pandas hands out read-only arrays, which torch.from_numpy warns about)
    query_index, positive_index, negative_index = (np.array(a, dtype=np.int64) for a in (query_index, positive_index, negative_index))
    margins = torch.as_tensor(np.asarray(teacher_margin, dtype=np.float32))
    if not len(query_index) == len(positive_index) == len(negative_index) == len(margins):
        raise ValueError(f"{len(query_index)} queries, {len(positive_index)} positives, {len(negative_index)} negatives "
                         f"and {len(margins)} teacher margins: one of each per triple")
    if len(query_index) < batch_size:
        raise ValueError(f"{len(query_index)} triples: fewer than one batch of {batch_size}")
    if not torch.isfinite(margins).all():
        raise ValueError("the teacher margins must be finite")
    if query_index.min() < 0 or query_index.max() >= len(queries) or min(positive_index.min(), negative_index.min()) < 0 \
            or max(positive_index.max(), negative_index.max()) >= len(catalogue):
        raise ValueError("a query or product row is outside `queries` or `catalogue`")
    device = model.device
    documents, doc_map = cached_documents(catalogue, doc_map_rank, device, seed)
    if initial_scale is None:
        initial_scale = matched_scale(model, queries, query_index, positive_index, negative_index, margins.numpy(),
                                      documents.cpu().numpy())
    scale = MarginScale(initial_scale).to(device)
    margins = margins.to(device)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        q = embed(model, [queries[i] for i in query_index[rows]], bf16)
        both = torch.from_numpy(np.concatenate([positive_index[rows], negative_index[rows]])).to(device)
        d = documents[both] if doc_map is None else doc_map(documents[both])
        cosines = (q.repeat(2, 1) * d).sum(dim=-1)
        student = scale(cosines[:len(rows)] - cosines[len(rows):])
        return nn.functional.mse_loss(student, margins[torch.from_numpy(rows).to(device)])

    return fit_against_catalogue(model, doc_map, {"scale": scale}, len(query_index), batch_loss, catalogue, score_valid,
                                 learning_rate=learning_rate, map_learning_rate=map_learning_rate,
                                 batch_size=batch_size, eval_every=eval_every, patience=patience, max_epochs=max_epochs,
                                 max_seconds=max_seconds, seed=seed, progress=progress, desc="distillation steps")
