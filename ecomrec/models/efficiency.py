"""The data-efficiency curve: what N real training queries buy, and what synthetic queries add to them.

**Nested subsets.** A seeded permutation of the training queries; the subset of size N is its first N queries
with *all* their judged pairs, so the subset at N = 300 holds the one at N = 100 (`nested_subsets`). A writer
that may be used at N must only have seen those N queries (`upper_bound`).

**The trainer: adapters on frozen vectors.** A point of the curve must be trained to convergence, and the curve
has dozens of points (sizes × sources × seeds), so each must cost seconds, not the minutes a MiniLM fine-tuning
costs on a CPU. Every text is encoded once by the packaged MiniLM (queries, synthetic queries, the catalogue);
what trains is a residual map on each side,

$$q' = \\mathrm{norm}\\big(q + W_2\\,\\mathrm{gelu}(W_1 q)\\big), \\qquad d' = \\mathrm{norm}(d + B A d),$$

($W_2 = 0$ and $B = 0$ at the start, so step 0 is zero-shot MiniLM exactly). The loss is a softmax over the
batch's positives and a few thousand products drawn uniformly for each batch (the query's other known positives
masked out): a sampled estimate of the softmax over the whole catalogue of `ecomrec.models.query_tower` (uniform
draws give every negative the same chance, so no correction term is needed) at a tenth of its cost per step;
`negatives=None` computes the exact one. Valid NDCG@10 costs one matrix product, so the trainer evaluates often, keeps the
best state and stops on patience (`ecomrec.models.loop.train_until_valid`). What this leaves out: the encoder's
own weights never move, so the curve measures what the data teaches a small model on top of MiniLM; `06`
compares its N = all point with `04`'s two-tower model, which fine-tunes every weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ecomrec import config as C
from ecomrec.metrics import bootstrap_ci, seed_pooled_paired, verdict
from ecomrec.models.loop import LoopFit, adamw, train_until_valid
from ecomrec.models.query_tower import DocumentMap, map_catalogue, training_examples
from ecomrec.models.search import top_k_inner
from ecomrec.models.selection import PATIENCE
from ecomrec.progress import progress as progress_bar


def nested_subsets(ids: Sequence, sizes: Sequence[int | None], seed: int = C.SEED) -> dict[int, np.ndarray]:
    """{N: the first N ids of one seeded permutation of the distinct `ids`}; a size of None means all of them.

    The subsets are nested (each holds every smaller one) and depend only on the distinct ids and the seed."""
    distinct = np.unique(np.asarray(ids))
    order = np.random.default_rng(seed).permutation(distinct)
    out = {}
    for size in sizes:
        n = len(distinct) if size is None else int(size)
        if n < 0 or n > len(distinct):
            raise ValueError(f"subset size {size} outside 0..{len(distinct)} (the number of distinct ids)")
        out[n] = order[:n]
    return dict(sorted(out.items()))


def upper_bound(writer_saw: int | None, n: int) -> bool:
    """Whether a writer trained on (or prompted with) `writer_saw` real training queries breaks the rule at size N:
    it may only know the N queries of the row it is added to (None = the writer saw no real query)."""
    return writer_saw is not None and writer_saw > n


def writer_examples(train_pairs: pd.DataFrame, subset_ids: Sequence, k: int, seed: int) -> list[tuple[str, str]]:
    """k (title, query) few-shot examples drawn only from the pairs of the queries `subset_ids` (a nested subset,
    `nested_subsets`), so a writer prompted with them knows only that subset: it respects every N whose subset
    holds this one (`upper_bound(len(subset_ids), n)` is False). Refuses a subset with queries that are not in
    `train_pairs` (a subset of another split, or of another pool)."""
    from ecomrec.augment.llm import few_shot_examples

    subset_ids = pd.Index(subset_ids)
    missing = subset_ids.difference(train_pairs[C.COL_QUERY_ID])
    if len(missing):
        raise ValueError(f"{len(missing)} subset queries have no training pair, e.g. {list(missing[:3])}")
    pool = train_pairs[train_pairs[C.COL_QUERY_ID].isin(subset_ids)]
    return few_shot_examples(pool, k, seed, query_col=C.COL_QUERY, title_col=C.COL_TITLE)


class QueryMap(nn.Module):
    """q' = normalise(q + W2 gelu(W1 q)): a residual two-layer map of fixed query vectors; W2 = 0 at the start."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {hidden}")
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, dim)
        nn.init.zeros_(self.outer.weight)
        nn.init.zeros_(self.outer.bias)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(queries + self.outer(nn.functional.gelu(self.inner(queries))), dim=-1)


@dataclass
class AdapterFit(LoopFit):
    """`LoopFit` (learning curve, best evaluation, why it stopped) plus the trained maps."""

    query_map: QueryMap | None = None
    doc_map: DocumentMap | None = None

    def queries(self, vectors: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.query_map(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))).numpy()

    def catalogue(self, vectors: np.ndarray) -> np.ndarray:
        return map_catalogue(vectors, self.doc_map)


class NdcgScorer:
    """Per-query NDCG@k of query vectors searched exactly over catalogue vectors (`search.top_k_inner`: a certified bf16
    shortlist where the CPU has native bf16, about twice as fast), without building a run frame.

    `query_ids` fixes the query order of every call; `product_ids` are the catalogue rows' ids; `qrels` holds
    (query_id, product_id, gain) with graded gains (as `ecomrec.models.retrieval.search_qrels` gives)."""

    def __init__(self, query_ids: Sequence, product_ids: Sequence, qrels: pd.DataFrame, k: int = 10):
        self.query_ids, self.k = np.asarray(query_ids), k
        row_of = pd.Series(np.arange(len(product_ids)), index=np.asarray(product_ids))
        judged = qrels[qrels["gain"] > 0]
        missing = set(self.query_ids) - set(judged[C.COL_QUERY_ID])
        if missing:
            raise ValueError(f"{len(missing)} queries have no relevant judgment, e.g. {sorted(missing)[:3]}")
        known = judged[C.COL_PRODUCT_ID].isin(row_of.index)
        judged = judged[known & judged[C.COL_QUERY_ID].isin(self.query_ids)]
        position = pd.Series(np.arange(len(self.query_ids)), index=self.query_ids)
        self.n_products = len(product_ids)
        keys = position[judged[C.COL_QUERY_ID]].to_numpy() * self.n_products + row_of[judged[C.COL_PRODUCT_ID]].to_numpy()
        order = np.argsort(keys)
        self.keys, self.gains = keys[order], judged["gain"].to_numpy(dtype=float)[order]
        self.discounts = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.zeros((len(self.query_ids), k))
        all_gains = qrels[qrels[C.COL_QUERY_ID].isin(self.query_ids) & (qrels["gain"] > 0)]
        for q, gains in all_gains.groupby(C.COL_QUERY_ID)["gain"]:  # the ideal counts every judgment, found or not
            best = np.sort(gains.to_numpy(dtype=float))[::-1][:k]
            ideal[position[q], :len(best)] = best
        self.idcg = ideal @ self.discounts

    def __call__(self, queries: np.ndarray, catalogue: np.ndarray) -> np.ndarray:
        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        d = torch.from_numpy(np.ascontiguousarray(catalogue, dtype=np.float32))
        if len(q) != len(self.query_ids) or len(d) != self.n_products:
            raise ValueError(f"expected {len(self.query_ids)} queries and {self.n_products} products, "
                             f"got {len(q)} and {len(d)}")
        top = top_k_inner(q, d, self.k)[1].numpy()
        keys = np.arange(len(q))[:, None] * self.n_products + top
        at = np.clip(np.searchsorted(self.keys, keys), 0, max(len(self.keys) - 1, 0))
        gains = np.where(self.keys[at] == keys, self.gains[at], 0.0) if len(self.keys) else np.zeros(keys.shape)
        return gains @ self.discounts / self.idcg


def train_adapters(query_vectors: np.ndarray, query_index: Sequence[int], product_index: Sequence[int],
                   catalogue: np.ndarray, score_valid: Callable[[AdapterFit], float], *, hidden: int = 768,
                   doc_map_rank: int = 32, batch_size: int = 256, learning_rate: float = 1e-3, scale: float = 20.0,
                   negatives: int | None = 4096, hard: np.ndarray | None = None, eval_every: int | None = None,
                   patience: int = 5, max_epochs: float = 100.0, max_seconds: float | None = None,
                   bf16: bool = False, seed: int = C.SEED) -> AdapterFit:
    """Train a `QueryMap` and a `DocumentMap` on pairs (query_vectors[query_index[i]], catalogue row product_index[i])
    with a softmax over the batch's positives and `negatives` products drawn uniformly for each batch (None, or at
    least the catalogue's size: the whole catalogue; 0: the batch's positives only, "in-batch negatives"); the
    vectors themselves stay fixed. `hard` (one vector per pair, in the pairs' order) adds each pair's explicit
    negative, passed through the same document map, to the candidates of its whole batch.

    `score_valid(fit)` returns the valid score to maximise (`fit.queries(...)` and `fit.catalogue(...)` apply the
    current maps). It is measured at step 0 and every `eval_every` steps (default: about one pass over the pairs,
    at most 20 steps); training stops after `patience` evaluations without a gain or at `max_epochs` passes, and
    the best state is restored. A set under one batch trains with one batch of all its pairs. `bf16`: the maps and the
    logits under bfloat16 autocast (weights, loss and evaluation stay fp32); about 1.5× faster per step on a CPU
    with native bf16 (`config.native_bf16`), slower elsewhere."""
    if len(query_index) != len(product_index):
        raise ValueError(f"{len(query_index)} query rows but {len(product_index)} product rows")
    pairs, positives = training_examples(query_index, product_index)
    if pairs[:, 0].max() >= len(query_vectors) or pairs[:, 1].max() >= len(catalogue):
        raise ValueError("a query or product row is outside `query_vectors` or `catalogue`")
    if hard is not None and len(hard) != len(pairs):
        raise ValueError(f"{len(hard)} hard negatives for {len(pairs)} pairs")
    batch_size = min(batch_size, len(pairs))
    eval_every = eval_every or max(1, min(20, len(pairs) // batch_size))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)  # the negatives' draws; the loop's own generator orders the pairs
    queries = torch.from_numpy(np.ascontiguousarray(query_vectors, dtype=np.float32))
    documents = nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(catalogue, dtype=np.float32)), dim=-1)
    query_map, doc_map = QueryMap(queries.shape[1], hidden), DocumentMap(documents.shape[1], doc_map_rank)
    fit = AdapterFit(pd.DataFrame(), 0, 0.0, "", 0.0, 0.0, query_map=query_map, doc_map=doc_map)
    hard = None if hard is None else nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(hard, dtype=np.float32)), dim=-1)
    every_product = negatives is None or negatives >= len(documents)

    def batch_loss(rows: np.ndarray) -> torch.Tensor:
        batch = pairs[rows]
        candidates = (np.arange(len(documents)) if every_product else
                      np.unique(np.concatenate([batch[:, 1], rng.choice(len(documents), negatives, replace=False)])))
        products = documents[candidates] if hard is None else torch.cat([documents[candidates], hard[rows]])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = scale * query_map(queries[batch[:, 0]]) @ doc_map(products).T  # hard negatives after the candidates
        logits = logits.float()
        others = np.array([(row, p) for row, (query, target) in enumerate(batch) for p in positives[query] if p != target],
                          dtype=np.int64).reshape(-1, 2)
        at = np.searchsorted(candidates, others[:, 1])
        found = at < len(candidates)
        found[found] = candidates[at[found]] == others[found, 1]
        if found.any():  # the query's other known positives are not negatives
            logits[torch.from_numpy(others[found, 0]), torch.from_numpy(at[found])] = -torch.inf
        return nn.functional.cross_entropy(logits, torch.from_numpy(np.searchsorted(candidates, batch[:, 1])))

    optimiser = adamw(list(query_map.parameters()) + list(doc_map.parameters()), lr=learning_rate)
    loop = train_until_valid({"query_map": query_map, "doc_map": doc_map}, optimiser, len(pairs), batch_loss,
                             lambda: score_valid(fit), batch_size=batch_size, eval_every=eval_every, patience=patience,
                             max_epochs=max_epochs, max_seconds=max_seconds, decay=False, seed=seed)
    return AdapterFit(**vars(loop), query_map=query_map.eval(), doc_map=doc_map.eval())


@dataclass
class Source:
    """Synthetic training pairs: their query vectors, the catalogue row of each pair's product, and how many real
    training queries the writer saw (None: none, e.g. templates). A row of the curve whose writer differs per
    seed (e.g. few-shot examples drawn from each seed's own nested subset) is a dict {seed: Source}."""

    vectors: np.ndarray
    product_rows: np.ndarray
    writer_saw: int | None


def source_for(source: "Source | dict[int, Source]", seed: int) -> Source:
    """The pairs a curve row adds at `seed`: the source itself, or its seed's entry when it is one per seed."""
    if not isinstance(source, dict):
        return source
    if seed not in source:
        raise ValueError(f"a per-seed source has no pairs for seed {seed} (it has {sorted(source)})")
    return source[seed]


def writer_saw(source: "Source | dict[int, Source]") -> int | None:
    """How many real training queries the row's writer saw (the same for every seed of a per-seed source)."""
    saw = {s.writer_saw for s in (source.values() if isinstance(source, dict) else [source])}
    if len(saw) != 1:
        raise ValueError(f"a per-seed source's writers must have seen the same number of real queries, got {saw}")
    return saw.pop()


def run_curve(real_vectors: np.ndarray, real_query_ids: Sequence, real_pairs: tuple[np.ndarray, np.ndarray],
              sources: dict[str, Source | dict[int, Source]], catalogue: np.ndarray, sizes: Sequence[int | None], seeds: Sequence[int],
              synthetic_pairs: int, score_valid: Callable[[AdapterFit], float], score_test: Callable[[AdapterFit], np.ndarray],
              zero_shot_test: np.ndarray, *, seeds_at_all: int = 1, up_to: dict[str, int] | None = None,
              progress: bool = False, **train_kwargs) -> tuple[dict[tuple[str, int, int], np.ndarray], dict[tuple[str, int, int], AdapterFit]]:
    """Train every point of the curve and score it on test.

    Row "real only" trains on the pairs of the N real queries of `nested_subsets(real_query_ids, sizes, seed)`;
    each source's row adds `synthetic_pairs` of its pairs (a seeded sample; a per-seed source draws from its seed's
    entry) to the same N real ones. N = 0 is zero-shot for "real only" (`zero_shot_test`, untrained) and the
    synthetic pairs alone for a source. The seed draws the subsets, the synthetic sample and the training order;
    N = all (every real query) is trained with the first `seeds_at_all` seeds only; a row named in `up_to` only at
    N <= its entry (an ablation that matters where real data is scarce). `real_pairs` = (row of each
    pair's query in `real_vectors`, catalogue row of its product), with `real_query_ids` the id of each row of
    `real_vectors`. Returns per-query test scores and fits, keyed by (row, N, seed)."""
    real_query_ids = np.asarray(real_query_ids)
    real_rows, real_products = (np.asarray(a, dtype=np.int64) for a in real_pairs)
    short = {(name, seed): len(source_for(s, seed).product_rows) for name, s in sources.items() for seed in seeds
             if len(source_for(s, seed).product_rows) < synthetic_pairs}
    if short:
        raise ValueError(f"sources with fewer than {synthetic_pairs} pairs (row, seed): {short}")
    for source in sources.values():
        writer_saw(source)  # one count per row
    subsets = {seed: nested_subsets(real_query_ids, sizes, seed) for seed in seeds}
    n_all = len(np.unique(real_query_ids))
    up_to = up_to or {}
    if set(up_to) - set(sources):
        raise ValueError(f"up_to names rows that are not sources: {sorted(set(up_to) - set(sources))}")
    plan = [(name, n, seed) for seed_number, seed in enumerate(seeds) for n in subsets[seed]
            if n < n_all or seed_number < seeds_at_all
            for name in ("real only", *sources) if (n > 0 or name != "real only") and n <= up_to.get(name, n_all)]

    def joined_key(name: str, seed: int) -> tuple:  # one join per row, or per seed for a per-seed row
        return name, seed if isinstance(sources[name], dict) else None

    joined = {}  # real + the row's synthetic vectors
    for name in sources:
        for seed in seeds:
            if joined_key(name, seed) not in joined:
                joined[joined_key(name, seed)] = np.concatenate([real_vectors, source_for(sources[name], seed).vectors])
    scores = {("real only", 0, seed): np.asarray(zero_shot_test) for seed in seeds if 0 in sizes}
    fits = {}
    for name, n, seed in progress_bar(plan, desc="curve points", disable=not progress):
        chosen = np.isin(real_query_ids[real_rows], subsets[seed][n])
        vectors, rows, products = real_vectors, real_rows[chosen], real_products[chosen]
        if name != "real only":
            source = source_for(sources[name], seed)
            picked = np.random.default_rng(seed).choice(len(source.product_rows), synthetic_pairs, replace=False)
            rows = np.concatenate([rows, len(real_vectors) + picked])
            products = np.concatenate([products, source.product_rows[picked]])
            vectors = joined[joined_key(name, seed)]
        fit = train_adapters(vectors, rows, products, catalogue, score_valid, seed=seed, **train_kwargs)
        fits[(name, n, seed)], scores[(name, n, seed)] = fit, np.asarray(score_test(fit))
    return scores, fits


CURVE_METRICS = {"ndcg@10": "NDCG@10", "ndcg@10_ci_low": "low", "ndcg@10_ci_high": "high", "seeds": "seeds",
                 "upper_bound": "upper bound", "ndcg@10_delta": "Δ", "ndcg@10_delta_ci_low": "Δ low",
                 "ndcg@10_delta_ci_high": "Δ high", "ndcg@10_delta_seed_min": "Δ seed min",
                 "ndcg@10_delta_seed_max": "Δ seed max"}  # recorded metric name -> `curve_table` column


def record_curve(table: pd.DataFrame, keys: Callable[[dict], Sequence[str]],
                 metrics: Sequence[str] = tuple(CURVE_METRICS), split: str = "test") -> int:
    """Record each row of a `curve_table` under `curve/<split>/<key>/<metric>`, for every key `keys(row)` names and
    every one of `metrics` whose value is finite (a point with no Δ records none); returns how many it recorded."""
    from ecomrec import reporting

    unknown = set(metrics) - set(CURVE_METRICS)
    if unknown:
        raise ValueError(f"not curve metrics: {sorted(unknown)}; known: {list(CURVE_METRICS)}")
    count = 0
    for row in table.to_dict("records"):
        for key in keys(row):
            for metric in metrics:
                value = row.get(CURVE_METRICS[metric])
                if value is not None and np.isfinite(value):
                    reporting.record(f"curve/{split}/{key}/{metric}", float(value))
                    count += 1
    return count


def verdict_line(table: pd.DataFrame, row: str) -> str:
    """`row`'s points of a `curve_table` grouped by the verdict of their paired interval (`ecomrec.metrics.verdict`),
    e.g. "helped at N = 0 (+0.031); no detectable difference at N = 100 (+0.002), N = 300 (-0.001)"."""
    verdicts: dict[str, list[str]] = {}
    for r in table[(table["row"] == row) & table["Δ"].notna()].to_dict("records"):
        verdicts.setdefault(verdict(r["Δ low"], r["Δ high"]), []).append(
            f"N = {r['N']:,} ({r['Δ']:+.3f}{', upper bound' if r['upper bound'] else ''})")
    return "; ".join(f"{v} at {', '.join(points)}" for v, points in verdicts.items()) or "no point compared"


def curve_table(scores: dict[tuple[str, int, int], np.ndarray], sources: dict[str, Source | dict[int, Source]],
                fits: dict[tuple[str, int, int], LoopFit], seed: int = C.SEED, reference: str = "real only") -> pd.DataFrame:
    """One row per (row, N): mean test NDCG@10 over queries of the per-query mean over seeds, its 95 % bootstrap
    interval, the paired bootstrap Δ against `reference` at the same N (same seeds, hence the same real subsets),
    the per-seed Δ range, how many of its trained seeds stopped at their budget rather than by patience (`fits`;
    an untrained point counts none), and whether the writer saw more real queries than N (an upper bound)."""
    rows = []
    for name, n in dict.fromkeys((name, n) for name, n, _ in scores):
        seeds = sorted(s for m, k, s in scores if (m, k) == (name, n))
        per_query = np.mean([scores[(name, n, s)] for s in seeds], axis=0)
        mean, low, high = bootstrap_ci(per_query, seed=seed)
        row = {"row": name, "N": n, "seeds": len(seeds), "NDCG@10": mean, "low": low, "high": high,
               "budget stops": sum(fits[(name, n, s)].stopped != PATIENCE for s in seeds if (name, n, s) in fits),
               "upper bound": name in sources and upper_bound(writer_saw(sources[name]), n)}
        paired = [s for s in seeds if (reference, n, s) in scores]
        if name != reference and paired:
            d = seed_pooled_paired([scores[(reference, n, s)] for s in paired], [scores[(name, n, s)] for s in paired],
                                   seed=seed)
            row |= {"Δ": d["diff"], "Δ low": d["low"], "Δ high": d["high"], "Δ seed min": d["seed_min"],
                    "Δ seed max": d["seed_max"]}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["row", "N"], kind="mergesort").reset_index(drop=True)
