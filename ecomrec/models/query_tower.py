"""Query-side training against a cached catalogue: every step sees the exact retrieval task.

Re-encoding 54,667 product titles costs minutes on a CPU, so a two-tower model that must re-encode the catalogue
for every evaluation can afford few of them. Here the catalogue is encoded **once** (and cached,
`ecomrec.models.embedding_cache`); the query encoder trains against all of it. For a batch of queries $q_i$ with
positive products $p_i$, the loss is a softmax over the *whole* catalogue $D$,

$$\\mathcal{L} = -\\frac{1}{B}\\sum_i \\log \\frac{e^{s\\, q_i \\cdot d'_{p_i}}}{\\sum_{j \\in D} e^{s\\, q_i \\cdot d'_j}},$$

one matrix product per batch (no sampled negatives: all 54,667 are negatives, except the query's other known
positives, which are masked out). The document side can still move without re-encoding: $d' = \\mathrm{norm}(d +
B A d)$ is a low-rank learned map of the cached vector (rank $r$, $B$ starts at zero, so step 0 is the cached
model exactly). Valid NDCG@10 costs only the valid queries' encodes, so the trainer can evaluate often, keep the
best checkpoint and stop when valid stops improving (`ecomrec.models.selection.EarlyStopping`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ecomrec import config as C
from ecomrec.models.loop import LoopFit, adamw, train_until_valid


class DocumentMap(nn.Module):
    """d' = normalise(d + B A d): a rank-`rank` update of fixed document vectors; B = 0 at the start."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, documents: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(documents + self.up(self.down(documents)), dim=-1)


def map_catalogue(catalogue: np.ndarray, doc_map: DocumentMap | None) -> np.ndarray:
    """The catalogue vectors a trained query tower searches: mapped (and normalised) once, float32."""
    vectors = torch.from_numpy(np.ascontiguousarray(catalogue, dtype=np.float32))
    if doc_map is None:
        return nn.functional.normalize(vectors, dim=-1).numpy()
    with torch.no_grad():
        return doc_map.eval()(vectors).numpy()


@dataclass
class QueryTowerFit(LoopFit):
    """`LoopFit` (learning curve, best evaluation, why it stopped) plus the trained document map (None without one)."""

    doc_map: DocumentMap | None = None

    def catalogue(self, vectors: np.ndarray) -> np.ndarray:
        return map_catalogue(vectors, self.doc_map)


def embed(model, texts: Sequence[str], bf16: bool = False) -> torch.Tensor:
    """Normalised float32 sentence embeddings with gradients (a SentenceTransformer's forward; `bf16`: the
    encoder under bfloat16 autocast)."""
    features = model.preprocess(list(texts))
    features = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in features.items()}
    with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(features)["sentence_embedding"]
    return nn.functional.normalize(out.float(), dim=-1)


def training_examples(query_index: Sequence[int], product_index: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(query row, catalogue row) pairs → the pairs as an array and, per query row, all its positives
    (to mask the others out of each pair's softmax)."""
    pairs = np.column_stack([np.asarray(query_index, dtype=np.int64), np.asarray(product_index, dtype=np.int64)])
    if len(pairs) == 0:
        raise ValueError("no training pairs")
    n_queries = int(pairs[:, 0].max()) + 1
    order = np.argsort(pairs[:, 0], kind="stable")
    bounds = np.searchsorted(pairs[order, 0], np.arange(n_queries + 1))
    positives = [np.unique(pairs[order[bounds[q]:bounds[q + 1]], 1]) for q in range(n_queries)]
    return pairs, positives


def train_query_tower(model, queries: Sequence[str], query_index: Sequence[int], product_index: Sequence[int],
                      catalogue: np.ndarray, score_valid: Callable[[object, np.ndarray], float], *,
                      doc_map_rank: int | None = 32, batch_size: int = 64, learning_rate: float = 3e-5,
                      map_learning_rate: float = 1e-3, scale: float = 20.0, eval_every: int = 200,
                      patience: int = 3, max_epochs: float = 3.0, max_seconds: float | None = None,
                      bf16: bool = False, seed: int = C.SEED, progress: bool = False) -> QueryTowerFit:
    """Train `model` (a SentenceTransformer: the query tower) on pairs (queries[query_index[i]], catalogue row
    product_index[i]) with a full-catalogue softmax; `catalogue` (N × d, the cached product vectors) stays fixed.

    `score_valid(model, catalogue_vectors)` returns the valid score to maximise (e.g. NDCG@10 of the queries
    encoded by `model` against the mapped catalogue); it is measured before training (step 0) and every
    `eval_every` steps. Training stops after `patience` evaluations without improvement, or at `max_epochs`
    passes over the pairs, or after `max_seconds`; the best evaluation's weights (query tower and document
    map) are restored. `bf16` runs the query encoder under bfloat16 autocast; the catalogue softmax stays float32.
    """
    if len(query_index) != len(product_index):
        raise ValueError(f"{len(query_index)} query rows but {len(product_index)} product rows")
    if eval_every < 1 or batch_size < 2 or max_epochs <= 0:
        raise ValueError("eval_every must be >= 1, batch_size >= 2 and max_epochs > 0")
    pairs, positives = training_examples(query_index, product_index)
    if len(pairs) < batch_size:
        raise ValueError(f"{len(pairs)} training pairs: fewer than one batch of {batch_size}")
    if pairs[:, 0].max() >= len(queries) or pairs[:, 1].max() >= len(catalogue):
        raise ValueError("a query or product row is outside `queries` or `catalogue`")
    device = model.device
    documents, doc_map = cached_documents(catalogue, doc_map_rank, device, seed)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        batch = pairs[rows]
        q = embed(model, [queries[q] for q in batch[:, 0]], bf16)  # bf16 for the encoder only: the softmax stays float32
        logits = scale * q @ (doc_map(documents) if doc_map is not None else documents).T
        for row, (query, target) in enumerate(batch):
            others = positives[query][positives[query] != target]
            logits[row, torch.from_numpy(others).to(device)] = -torch.inf
        return nn.functional.cross_entropy(logits, torch.from_numpy(batch[:, 1]).to(device))

    return fit_against_catalogue(model, doc_map, {}, len(pairs), batch_loss, catalogue, score_valid,
                                 learning_rate=learning_rate, map_learning_rate=map_learning_rate,
                                 batch_size=batch_size, eval_every=eval_every, patience=patience, max_epochs=max_epochs,
                                 max_seconds=max_seconds, seed=seed, progress=progress, desc="query tower steps")


def cached_documents(catalogue: np.ndarray, doc_map_rank: int | None, device, seed: int) -> tuple[torch.Tensor, DocumentMap | None]:
    """The fixed catalogue as normalised float32 vectors on `device`, and a fresh seeded `DocumentMap` of rank
    `doc_map_rank` over them (None for no map)."""
    torch.manual_seed(seed)
    documents = nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(catalogue, dtype=np.float32)), dim=-1).to(device)
    return documents, DocumentMap(documents.shape[1], doc_map_rank).to(device) if doc_map_rank else None


def fit_against_catalogue(model, doc_map: DocumentMap | None, extra: dict[str, nn.Module], n_examples: int,
                          batch_loss: Callable[[np.ndarray], torch.Tensor], catalogue: np.ndarray,
                          score_valid: Callable[[object, np.ndarray], float], *, learning_rate: float,
                          map_learning_rate: float, desc: str, **loop) -> QueryTowerFit:
    """The loop both query-side trainers share: AdamW over the query tower (`learning_rate`) and over the document
    map and the `extra` modules (`map_learning_rate`), `train_until_valid` on `batch_loss`, each evaluation scoring
    the query tower against the mapped catalogue; `loop` holds the loop's budget (batch size, patience, ...)."""
    side = list(extra.values()) + ([doc_map] if doc_map is not None else [])
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": learning_rate}]
    if side:
        groups.append({"params": [p for module in side for p in module.parameters()], "lr": map_learning_rate})
    parts = {"query_tower": model} | extra | ({"doc_map": doc_map} if doc_map is not None else {})
    model.train()
    fit = train_until_valid(parts, adamw(groups), n_examples, batch_loss,
                            lambda: score_valid(model, map_catalogue(catalogue, doc_map)), decay=False, desc=desc, **loop)
    return QueryTowerFit(**vars(fit), doc_map=doc_map.eval() if doc_map is not None else None)
