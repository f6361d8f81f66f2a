"""Two-tower bi-encoder training until valid stops improving (the main dense model of `04`).

Both towers are the same encoder (queries and titles share its weights), trained with the multiple-negatives
ranking loss: for a batch of $B$ pairs $(q_i, p_i)$,

$$\\mathcal{L} = -\\frac{1}{B}\\sum_i \\log \\frac{e^{s\\,\\cos(q_i, p_i)}}{\\sum_j e^{s\\,\\cos(q_i, p_j)}},$$

the other products of the batch being negatives. A product that is a *known* positive of $q_i$ (the same
product twice in a batch, or another relevant product of the same query) is masked out of $q_i$'s
denominator instead of being pushed away: no false in-batch negatives, without a sampler that has to keep
duplicates apart.

Selection needs the document side re-encoded, so valid is scored on a **valid sub-catalogue**
(`subcatalogue_scorer`): every product judged for a valid query plus a seeded uniform sample of the others.
It costs a fraction of a catalogue pass, so it can run every few hundred steps; the chosen checkpoint is then
encoded over the whole catalogue once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ecomrec import config as C
from ecomrec.models.loop import LoopFit, adamw, train_until_valid
from ecomrec.models.query_tower import embed, training_examples


def in_batch_false_negatives(batch: np.ndarray, positives: Sequence[np.ndarray]) -> np.ndarray:
    """B × B mask: True where product j of the batch is a known positive of query i, off the diagonal."""
    batch = np.asarray(batch)
    mask = np.array([np.isin(batch[:, 1], positives[query]) for query in batch[:, 0]], dtype=bool)
    np.fill_diagonal(mask, False)
    return mask


def subcatalogue_scorer(ids: Sequence, titles: Sequence[str], query_ids: Sequence, query_texts: Sequence[str],
                        qrels: pd.DataFrame, distractors: int, seed: int = C.SEED, k: int = 10) -> tuple[Callable, np.ndarray]:
    """`score(model)` → mean NDCG@k of the valid queries over a sub-catalogue the model re-encodes each call:
    every product judged for these queries plus `distractors` products drawn uniformly (seeded) from the rest.
    Returns (score, the sub-catalogue's product ids)."""
    from ecomrec.models.retrieval import dense_scorer
    from ecomrec.models.search import encode

    ids = np.asarray(ids)
    judged = np.isin(ids, qrels[C.COL_PRODUCT_ID].unique())
    others = np.flatnonzero(~judged)
    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([np.flatnonzero(judged), rng.choice(others, min(distractors, len(others)), replace=False)]))
    sub_ids, sub_titles = ids[rows], [titles[i] for i in rows]
    dense = dense_scorer(sub_ids, query_ids, query_texts, qrels, k=k)
    return (lambda model: dense(model, encode(model, sub_titles))), sub_ids


def mnrl_batch_loss(model, queries: Sequence[str], titles: Sequence[str], pairs: np.ndarray,
                    positives: Sequence[np.ndarray], *, scale: float = 20.0, bf16: bool = False) -> Callable[[np.ndarray], torch.Tensor]:
    """`loss(rows)`: the masked multiple-negatives ranking loss of the batch `pairs[rows]` (rows of query row,
    product row; `positives[q]`: query q's known positive product rows, as `query_tower.training_examples`
    returns them), both towers being `model`. `train_two_tower` steps on it; `scripts/bench_optimiser.py` times it."""
    def loss(rows: np.ndarray) -> torch.Tensor:
        batch = pairs[rows]
        q = embed(model, [queries[i] for i in batch[:, 0]], bf16)
        p = embed(model, [titles[j] for j in batch[:, 1]], bf16)
        logits = (scale * q @ p.T).masked_fill(torch.from_numpy(in_batch_false_negatives(batch, positives)).to(q.device), -torch.inf)
        return nn.functional.cross_entropy(logits, torch.arange(len(batch), device=logits.device))

    return loss


def train_two_tower(model, queries: Sequence[str], titles: Sequence[str], query_index: Sequence[int],
                    product_index: Sequence[int], score_valid: Callable[[object], float], *, batch_size: int = 32,
                    learning_rate: float = 5e-5, scale: float = 20.0, eval_every: int = 200, patience: int = 3,
                    max_epochs: float = 1.0, max_seconds: float | None = None, bf16: bool = False,
                    seed: int = C.SEED, progress: bool = False) -> LoopFit:
    """Fine-tune `model` (a SentenceTransformer) on pairs (queries[query_index[i]], titles[product_index[i]]) with
    in-batch negatives (known positives masked), AdamW at `learning_rate` with warm-up and linear decay over the
    budget, `score_valid(model)` every `eval_every` steps; the best evaluation's weights are restored."""
    if len(query_index) != len(product_index):
        raise ValueError(f"{len(query_index)} query rows but {len(product_index)} product rows")
    if batch_size < 2:
        raise ValueError("in-batch negatives need a batch of at least 2")
    pairs, positives = training_examples(query_index, product_index)
    if pairs[:, 0].max() >= len(queries) or pairs[:, 1].max() >= len(titles):
        raise ValueError("a query or product row is outside `queries` or `titles`")
    batch_loss = mnrl_batch_loss(model, queries, titles, pairs, positives, scale=scale, bf16=bf16)
    optimiser = adamw([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    model.train()
    return train_until_valid({"model": model}, optimiser, len(pairs), batch_loss, lambda: score_valid(model),
                             batch_size=batch_size, eval_every=eval_every, patience=patience, max_epochs=max_epochs,
                             max_seconds=max_seconds, seed=seed, progress=progress, desc="two-tower steps")
