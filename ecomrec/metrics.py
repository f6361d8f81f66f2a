"""Ranking metrics per query/user, beyond-accuracy metrics, bootstrap intervals and a paired test.

Conventions (those of trec_eval and ranx, so results compare with published numbers):
- a *run* ranks documents per query, best first; a *qrels* frame holds graded judgments;
- a document is relevant when its grade is at least `threshold` (default: any positive grade);
- NDCG uses linear gains (gain = grade) and log2 discounts: DCG@k = Σ_{i≤k} g_i / log2(i + 1),
  divided by the DCG of the ideal ordering of *all* judged documents of the query; `binary=True`
  gives every relevant document gain 1 (binary NDCG);
- MRR@k is 1/rank of the first relevant document in the top k (0 if none); HR@k is 1 if any;
- AP@k = Σ_{i≤k, d_i relevant} Precision@i / #relevant; Precision@k always divides by k.
Queries with no relevant document are left out of every average (they have no defined recall).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecomrec.config import SEED

METRICS = ("ndcg", "recall", "precision", "mrr", "map", "hr")


def per_query_metrics(qrels: pd.DataFrame, run: pd.DataFrame, k: int = 10, query: str = "query_id",
                      doc: str = "product_id", grade: str = "relevance", score: str = "score",
                      threshold: float | None = None, binary: bool = False) -> pd.DataFrame:
    """One row per judged query with ndcg, recall, precision, mrr, map and hr at cut-off `k`.

    `binary=True` computes NDCG with gain 1 for every relevant document instead of its grade.

    `run` holds (query, doc, score); within a query, higher scores rank first (ties: doc id order).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    for frame, cols, name in ((qrels, (query, doc, grade), "qrels"), (run, (query, doc, score), "run")):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} lacks columns {missing}")
    relevant_from = 1e-12 if threshold is None else threshold
    judged = qrels[qrels[grade] >= relevant_from]
    if binary:
        judged = judged.assign(**{grade: 1.0})
    gains = {q: dict(zip(g[doc], g[grade])) for q, g in judged.groupby(query, sort=False)}
    ranked = run.sort_values([query, score, doc], ascending=[True, False, True], kind="mergesort")
    top = ranked.groupby(query, sort=False).head(k)
    lists = top.groupby(query, sort=False)[doc].agg(list)
    rows = []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for q, rel in gains.items():
        docs = lists.get(q, [])
        hit_gains = np.array([rel.get(d, 0.0) for d in docs], dtype=float)
        hits = hit_gains > 0
        ideal = np.sort(np.fromiter(rel.values(), dtype=float))[::-1][:k]
        dcg = float((hit_gains * discounts[: len(hit_gains)]).sum())
        idcg = float((ideal * discounts[: len(ideal)]).sum())
        first = int(np.argmax(hits)) + 1 if hits.any() else 0
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1) if len(hits) else np.array([])
        rows.append({query: q, "ndcg": dcg / idcg, "recall": hits.sum() / len(rel), "precision": hits.sum() / k,
                     "mrr": 1.0 / first if first else 0.0,
                     "map": float((precision_at * hits).sum() / len(rel)), "hr": float(hits.any())})
    return pd.DataFrame(rows, columns=[query, *METRICS])


def bootstrap_ci(values, n_resamples: int = 2_000, confidence: float = 0.95, seed: int = SEED) -> tuple[float, float, float]:
    """Mean of `values` and its percentile-bootstrap confidence interval (resampling queries)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_resamples, len(values)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(values.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def paired_bootstrap(a, b, n_resamples: int = 2_000, confidence: float = 0.95, seed: int = SEED) -> dict[str, float]:
    """Mean difference b − a over the same queries, its bootstrap interval, and a two-sided p-value.

    The p-value is the share of resampled differences on the other side of zero, doubled (capped at 1).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    diff = b - a
    mean, low, high = bootstrap_ci(diff, n_resamples, confidence, seed)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    p = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return {"diff": mean, "low": low, "high": high, "p_value": float(min(1.0, p))}


def seed_pooled_paired(reference, candidate, n_resamples: int = 2_000, seed: int = SEED) -> dict[str, float]:
    """A paired comparison over training seeds as well as queries (users). `reference` and `candidate` are
    lists of per-query scores, one array per seed, paired by position (the same seeds, the same queries).
    Each side's scores are averaged over its seeds, then `paired_bootstrap` gives the mean difference and its
    interval; `seed_min` / `seed_max` is the range of the per-seed mean differences: the spread a single
    training seed would have shown."""
    if len(reference) != len(candidate) or not len(reference):
        raise ValueError(f"need the same number (at least 1) of seeds on both sides, got {len(reference)} and {len(candidate)}")
    reference = [np.asarray(r, dtype=float) for r in reference]
    candidate = [np.asarray(c, dtype=float) for c in candidate]
    d = paired_bootstrap(np.mean(reference, axis=0), np.mean(candidate, axis=0), n_resamples, seed=seed)
    per_seed = [float(np.mean(c - r)) for r, c in zip(reference, candidate)]
    return d | {"seed_min": min(per_seed), "seed_max": max(per_seed)}


HELPED, HURT, NO_DIFFERENCE = "helped", "hurt", "made no detectable difference"


RANX_NAMES = {"ndcg": "ndcg", "recall": "recall", "precision": "precision", "mrr": "mrr", "map": "map", "hr": "hit_rate"}


def ranx_ids(docs: pd.Series) -> dict:
    """Each distinct document id → a string of one fixed width (its position, zero-padded to 9 digits).

    ranx stores a Qrels' or Run's document ids as numpy strings as wide as the longest id, and numba compiles
    its loaders once per width (about 30 s on 2 cores). One width for every caller lets the compiled code that
    numba caches on disk serve every later check, whatever the ids look like."""
    unique = pd.unique(docs)
    if len(unique) >= 10**9:
        raise ValueError(f"{len(unique):,} distinct document ids: more than nine digits can number")
    return {d: f"{i:09d}" for i, d in enumerate(unique)}


def compare_with_ranx(qrels: pd.DataFrame, run: pd.DataFrame, ks: tuple[int, ...] = (10, 100), query: str = "query_id",
                      doc: str = "product_id", grade: str = "relevance", score: str = "score") -> pd.DataFrame:
    """Every metric of `per_query_metrics` (and binary NDCG), averaged over judged queries, next to ranx's value
    on the same judgments and run, with their absolute difference: an independent check of this module.

    ranx takes integer grades, so `grade` must hold whole numbers (scale them first); a query the run retrieves
    nothing for counts as 0 in both. Scores should be distinct within a query: ranx and this module break ties
    differently."""
    from ranx import Qrels, Run, evaluate

    grades = qrels[grade].to_numpy(dtype=float)
    if not np.allclose(grades, np.round(grades)):
        raise ValueError(f"ranx takes integer grades: scale {grade!r} to whole numbers first (e.g. 3 × (grade − 1))")
    ids = ranx_ids(pd.concat([qrels[doc], run[doc]]))
    ranx_qrels = Qrels({str(q): {ids[d]: int(round(g)) for d, g in zip(f[doc], f[grade]) if g > 0}
                        for q, f in qrels.groupby(query)})
    ranx_binary = Qrels({q: {d: 1 for d in docs} for q, docs in ranx_qrels.qrels.items()})
    ranx_run = Run({str(q): {ids[d]: float(s) for d, s in zip(f[doc], f[score])} for q, f in run.groupby(query)})
    columns = {"query": query, "doc": doc, "grade": grade, "score": score}
    rows = []
    for k in ks:
        ours = per_query_metrics(qrels, run, k=k, **columns).mean(numeric_only=True)
        theirs = evaluate(ranx_qrels, ranx_run, [f"{name}@{k}" for name in RANX_NAMES.values()], make_comparable=True)
        rows += [{"metric": f"{ours_name}@{k}", "ecomrec": ours[ours_name], "ranx": theirs[f"{name}@{k}"]}
                 for ours_name, name in RANX_NAMES.items()]
        rows.append({"metric": f"binary ndcg@{k}",
                     "ecomrec": per_query_metrics(qrels, run, k=k, binary=True, **columns)["ndcg"].mean(),
                     "ranx": evaluate(ranx_binary, ranx_run, f"ndcg@{k}", make_comparable=True)})
    return pd.DataFrame(rows).assign(difference=lambda f: (f["ecomrec"] - f["ranx"]).abs())


def verdict(low: float, high: float) -> str:
    """The course's one reading of a paired interval of (new − reference): "helped" when it lies above zero,
    "hurt" when below, else "made no detectable difference". Every notebook's prose uses it, so the same
    numbers always read the same way."""
    low, high = float(low), float(high)
    if not (np.isfinite(low) and np.isfinite(high)) or low > high:
        raise ValueError(f"need a finite interval with low <= high, got [{low}, {high}]")
    return HELPED if low > 0 else HURT if high < 0 else NO_DIFFERENCE


def error_bars(estimates, lows, highs) -> np.ndarray:
    """The (2, n) error-bar lengths matplotlib's `xerr` / `yerr` take: estimate − low below, high − estimate above,
    each floored at 0. A percentile-bootstrap interval need not contain its mean (a collapsed model's scores, all
    near 0, give one that starts above it), and matplotlib refuses a negative length; a NaN (no interval) is kept,
    and draws no bar. Every notebook's interval plot and the report's front page use it."""
    estimates, lows, highs = (np.asarray(v, dtype=float).ravel() for v in (estimates, lows, highs))
    if not len(estimates) == len(lows) == len(highs):
        raise ValueError(f"need as many lows and highs as estimates, got {len(estimates)}, {len(lows)}, {len(highs)}")
    if (lows > highs).any():
        raise ValueError("an interval has low > high")
    return np.maximum(np.vstack([estimates - lows, highs - estimates]), 0.0)


def catalog_coverage(recommended: pd.Series, catalogue_size: int) -> float:
    """Share of the catalogue that appears in at least one recommendation list."""
    return len(set().union(*map(set, recommended))) / catalogue_size if len(recommended) else 0.0


def novelty(recommended: pd.Series, popularity: pd.Series, n_users: int) -> float:
    """Mean self-information −log2(p(i)) of recommended items, p(i) = users who met i / all users."""
    p = (popularity / n_users).clip(lower=1.0 / n_users)
    info = [-np.log2(p.get(item, 1.0 / n_users)) for items in recommended for item in items]
    return float(np.mean(info)) if info else 0.0


def popularity_bias(recommended: pd.Series, popularity: pd.Series) -> float:
    """Mean training popularity (interaction count) of recommended items (average recommendation popularity)."""
    counts = [popularity.get(item, 0) for items in recommended for item in items]
    return float(np.mean(counts)) if counts else 0.0


def intra_list_diversity(recommended: pd.Series, embeddings: dict) -> float:
    """Mean pairwise cosine distance between the (normalised) embeddings of each list's items."""
    scores = []
    for items in recommended:
        vectors = np.array([embeddings[i] for i in items if i in embeddings])
        if len(vectors) < 2:
            continue
        sims = vectors @ vectors.T
        n = len(vectors)
        scores.append(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))
    return float(np.mean(scores)) if scores else 0.0
