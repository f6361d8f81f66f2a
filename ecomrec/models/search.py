"""Retrieval over a product catalogue: BM25 (bm25s) and exact dense search over normalised embeddings;
doc2query document expansion."""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from ecomrec import config as C
from ecomrec.progress import progress as progress_bar


@functools.cache  # once per process
def _cache_bm25s_kernel() -> None:
    """bm25s (0.3.16) compiles its numba retrieval kernel in every process, about 8 s on 2 cores, because it does
    not ask numba to keep the compiled code on disk. Re-wrap the serial kernel (`search` runs bm25s with
    `n_threads=0`, which takes it) with `cache=True`, once per process: the first process compiles and saves it
    beside bm25s' source, every later one loads it. Same Python function, same compiler: same scores."""
    from bm25s.numba import retrieve_utils
    from numba import njit

    retrieve_utils._retrieve_internal_jitted_serial = njit(nogil=True, cache=True)(retrieve_utils._retrieve_internal_jitted)


class BM25Index:
    """Okapi BM25 over product texts (bm25s; English stop words, lower-cased word tokens).

    Retrieval uses bm25s' numba backend: the same scores as its numpy backend, about 5x faster on a
    CPU (products with equal scores may come back in another order).
    """

    def __init__(self, ids: Sequence, texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        import logging

        import bm25s

        # bm25s sets its own logger to DEBUG: under any root handler (a library's basicConfig) every index
        # build would print a line on the page
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        self.ids = np.asarray(ids)
        self._bm25s = bm25s
        _cache_bm25s_kernel()
        self.retriever = bm25s.BM25(k1=k1, b=b, backend="numba")
        self.retriever.index(bm25s.tokenize(list(texts), stopwords="en", show_progress=False), show_progress=False)

    def search(self, queries: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k product ids and scores per query, best first.

        Products that share no word with the query score 0 and fill the list in arbitrary order: treat
        them as not retrieved (`rank_of(..., valid=scores > 0)`).
        """
        k = min(k, len(self.ids))
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        found = np.tile(self.ids[:k], (len(tokens.ids), 1))
        scores = np.zeros((len(tokens.ids), k), dtype=np.float32)
        # a query with no word BM25 keeps ("1/2 in." is digits and a stop word) scores 0 everywhere; bm25s
        # refuses such a query, so only the others are sent
        worded = [i for i, ids in enumerate(tokens.ids) if len(ids)]
        if worded:
            docs, found_scores = self.retriever.retrieve(type(tokens)(ids=[tokens.ids[i] for i in worded], vocab=tokens.vocab),
                                                         k=k, show_progress=False, n_threads=0)
            found[worded], scores[worded] = self.ids[docs], found_scores
        return found, scores

    def search_matched(self, queries: Sequence[str], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """`search`, with the products that share no word with the query scored −1, below every match: a run
        to evaluate or fuse (min-max scaling then puts them at 0, where a list's absent products are)."""
        found, scores = self.search(queries, k=k)
        return found, np.where(scores > 0, scores, -1.0)


SHORTLIST_MAX_K = 25  # top_k_inner shortlists in bf16 only for k up to this: deeper, the fp32 product is as fast
SHORTLIST_FACTOR = 4  # ... keeping this many candidates per result, re-scored in fp32
BF16_DOT_BOUND = 2.0 ** -6  # |bf16 product − fp32 product| ≤ this × |q| × |d|: inputs and output rounded to bf16
# (unit roundoff u = 2^-8 each: (2u + u²)·Σ|q_i d_i| + u·|q·d| ≤ 3.004u·|q||d| by Cauchy–Schwarz), with room for fp32 accumulation


def top_k_inner(queries: torch.Tensor, catalogue: torch.Tensor, k: int, bf16: bool | None = None,
                catalogue_bf16: Callable[[], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest inner products of each query row with the catalogue rows: (scores, row indices), best first,
    the scores those of the fp32 product.

    Where the CPU multiplies bf16 natively (`bf16=None`: `config.native_bf16("cpu")`) and k ≤ `SHORTLIST_MAX_K`, a
    bf16 product (about twice as fast) shortlists `SHORTLIST_FACTOR`·k rows per query, which are re-scored in fp32.
    The result is certified: a row outside the shortlist scores at most the shortlist's last bf16 score plus
    `BF16_DOT_BOUND`·|q|·max|d| in fp32, so a query whose k-th re-scored product is above that is exact, and any other
    query is recomputed in fp32. The top k is therefore fp32's; only the order of equal scores (duplicate
    products) may differ. `catalogue_bf16`: returns the catalogue already in bf16 (called only when the shortlist
    runs), to convert it once for many calls."""
    k = min(k, len(catalogue))
    shortlist = min(SHORTLIST_FACTOR * k, len(catalogue))
    if bf16 is None:
        bf16 = C.native_bf16("cpu")
    if not bf16 or k > SHORTLIST_MAX_K or shortlist == len(catalogue) or queries.device.type != "cpu":
        return torch.topk(queries @ catalogue.T, k, dim=1)
    coarse = queries.bfloat16() @ (catalogue.bfloat16() if catalogue_bf16 is None else catalogue_bf16()).T
    bound_scores, candidates = torch.topk(coarse, shortlist, dim=1)
    exact = torch.einsum("qd,qmd->qm", queries, catalogue[candidates])
    scores, at = torch.topk(exact, k, dim=1)
    rows = torch.gather(candidates, 1, at)
    slack = BF16_DOT_BOUND * queries.norm(dim=1) * catalogue.norm(dim=1).max()
    unsure = (scores[:, -1] <= bound_scores[:, -1].float() + slack).nonzero()[:, 0]
    if len(unsure):
        scores[unsure], rows[unsure] = torch.topk(queries[unsure] @ catalogue.T, k, dim=1)
    return scores, rows


class DenseIndex:
    """Exact inner-product search over L2-normalised embeddings (cosine similarity), in chunks (`top_k_inner`)."""

    def __init__(self, ids: Sequence, embeddings: np.ndarray):
        if len(ids) != len(embeddings):
            raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
        self.ids = np.asarray(ids)
        self.embeddings = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))

    @functools.cached_property
    def _embeddings_bf16(self) -> torch.Tensor:
        """The bf16 copy `top_k_inner` shortlists with: made at the first search that uses it, kept for the next."""
        return self.embeddings.bfloat16()

    def search(self, query_embeddings: np.ndarray, k: int = 10, chunk: int = 2048,
               progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.ids))
        queries = torch.from_numpy(np.ascontiguousarray(query_embeddings, dtype=np.float32))
        top_ids, top_scores = [], []
        for start in progress_bar(range(0, len(queries), chunk), desc="dense search", disable=not progress):
            values, indices = top_k_inner(queries[start:start + chunk], self.embeddings, k, catalogue_bf16=lambda: self._embeddings_bf16)
            top_ids.append(self.ids[indices.numpy()])
            top_scores.append(values.numpy())
        if not top_ids:
            return np.empty((0, k), dtype=self.ids.dtype), np.empty((0, k), dtype=np.float32)
        return np.concatenate(top_ids), np.concatenate(top_scores)


def rank_of(retrieved: np.ndarray, targets: Sequence, valid: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each row's target among its retrieved ids; 0 where it was not retrieved.

    `valid` (same shape, boolean) marks the entries that count: pass `scores > 0` for BM25, whose
    zero-score "results" share no word with the query and come back in arbitrary order.
    """
    hits = retrieved == np.asarray(targets)[:, None]
    if valid is not None:
        hits &= valid
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)


def native_bf16_encoder(encoder) -> bool:
    """Whether `encode` runs `encoder` under bfloat16 autocast by default: a PyTorch model on a device that
    multiplies bf16 natively (`config.native_bf16`)."""
    device = getattr(encoder, "device", None)
    return device is not None and C.native_bf16(str(device))


class Bf16Autocast:
    """A PyTorch SentenceTransformer or CrossEncoder whose `encode` / `predict` run under bfloat16 autocast: the same
    fp32 weights, matrix products in bf16 (native, about twice the fp32 rate, on CPUs with AVX512-BF16 or AMX and
    on recent GPUs; emulated and slower elsewhere). Nothing is exported or stored. The one place this package
    autocasts a model for inference: `encode` wraps with it, and a cross-encoder is wrapped before re-ranking."""

    def __init__(self, model):
        if getattr(model, "device", None) is None:
            raise TypeError(f"{type(model).__name__} is not a PyTorch model: bf16 autocast needs one")
        self.model, self.device = model, model.device

    def encode(self, texts, **kwargs) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.model.encode(texts, **kwargs)

    def predict(self, pairs, **kwargs) -> np.ndarray:
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.model.predict(pairs, **kwargs)

    def get_embedding_dimension(self) -> int:
        return self.model.get_embedding_dimension()


def encode(encoder, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
           chunk: int = 4096, bf16: bool | None = None) -> np.ndarray:
    """L2-normalised sentence embeddings as float32 (a terse progress bar: one line per 15 s).

    `bf16`: the encoder's forward under bfloat16 autocast (`Bf16Autocast`). None (the default) = where the device
    multiplies bf16 natively (`config.native_bf16`): there it is about 1.7× faster than float32, with a cosine to
    the float32 vector above 0.9999 (`07` measures both on the fine-tuned encoder); elsewhere bf16 is emulated and
    slower, so float32. Pass False where float32 itself is the point (parity checks against another runtime). An
    encoder that is not a PyTorch model (no `device`: ONNX Runtime) runs as it is, and asking it for bf16 raises."""
    texts = list(texts)
    if bf16 if bf16 is not None else native_bf16_encoder(encoder):
        encoder = Bf16Autocast(encoder)
    parts = [encoder.encode(texts[start:start + chunk], batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
             for start in progress_bar(range(0, len(texts), chunk), desc="encode", disable=not progress)]
    return np.concatenate(parts) if parts else np.empty((0, encoder.get_embedding_dimension()), np.float32)


COLLAPSED_COSINE = 0.99  # mean cosine of random pairs at or above it: every text gets nearly the same vector


def mean_pair_cosine(vectors: np.ndarray, pairs: int = 20_000, seed: int = C.SEED) -> float:
    """The mean cosine similarity of `pairs` random pairs of distinct rows of `vectors`. A working sentence encoder
    keeps the vectors of different texts far from parallel; a mean near 1 says that it gives every text nearly the
    same vector (collapsed), so a ranking by its cosine is noise."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ValueError(f"need at least two vectors (a 2-D array), got shape {vectors.shape}")
    if pairs < 1:
        raise ValueError("pairs must be positive")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(vectors), pairs)
    second = (first + rng.integers(1, len(vectors), pairs)) % len(vectors)  # never the same row
    a, b = vectors[first].astype(np.float64), vectors[second].astype(np.float64)  # only the sampled rows, not a catalogue copy
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if (norms == 0).any():
        raise ValueError("a zero vector has no direction: its cosine is undefined")
    return float((np.einsum("ij,ij->i", a, b) / norms).mean())


def expand_documents(product_ids: Sequence, titles: Sequence[str], extra: pd.DataFrame,
                     product_col: str = "product_id", text_col: str = "query") -> list[str]:
    """doc2query: each title followed by the extra texts (e.g. kept synthetic queries) written for its
    product, in order; products without any keep their title alone."""
    missing = {product_col, text_col} - set(extra.columns)
    if missing:
        raise KeyError(f"extra texts lack the columns {sorted(missing)}")
    if len(product_ids) != len(titles):
        raise ValueError(f"{len(product_ids)} product ids but {len(titles)} titles")
    grouped = extra.groupby(product_col, sort=False)[text_col].agg(lambda texts: " ".join(map(str, texts)))
    return [f"{title} {grouped[pid]}" if pid in grouped.index else str(title) for pid, title in zip(product_ids, titles)]
