"""From an offline lift to an online test: A/B sample sizes and team-draft interleaving.

An A/B test splits users between two systems and compares a metric's means; the users it needs grow with
the metric's variance and shrink with the square of the lift:

    n per arm = 2 σ² (z_{1−α/2} + z_{1−β})² / δ²   (two-sided test at level α with power 1 − β).

Interleaving shows *one* merged list to each user and credits each click to the system that placed the
clicked item; it needs far fewer impressions because every user compares both systems. Team-draft
interleaving (Radlinski et al., CIKM 2008): in each round a coin decides which system picks first; each
system adds its highest-ranked item not yet in the list, and the item joins that system's team.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ecomrec.config import SEED


def ab_sample_size(lift: float, sd: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Users per arm to detect a difference `lift` in a metric with per-user standard deviation `sd`."""
    if lift == 0 or sd <= 0:
        raise ValueError("need a non-zero lift and a positive standard deviation")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError("alpha and power must lie in (0, 1)")
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return int(np.ceil(2 * sd**2 * z**2 / lift**2))


def team_draft(a: Sequence, b: Sequence, k: int, rng: np.random.Generator) -> tuple[list, list]:
    """Merge rankings `a` and `b` into `k` items; returns (items, team) with team[i] ∈ {"a", "b"}."""
    items, team, used = [], [], set()
    ia = ib = 0
    count = {"a": 0, "b": 0}
    while len(items) < k:
        ia = _next_unused(a, ia, used)
        ib = _next_unused(b, ib, used)
        if ia >= len(a) and ib >= len(b):
            break
        # the team with fewer picks goes next; a coin breaks ties (and decides who starts)
        first = "a" if count["a"] < count["b"] or (count["a"] == count["b"] and rng.random() < 0.5) else "b"
        if first == "a" and ia >= len(a):
            first = "b"
        elif first == "b" and ib >= len(b):
            first = "a"
        item = a[ia] if first == "a" else b[ib]
        items.append(item)
        team.append(first)
        used.add(item)
        count[first] += 1
    return items, team


def _next_unused(ranking: Sequence, start: int, used: set) -> int:
    while start < len(ranking) and ranking[start] in used:
        start += 1
    return start


def cascade_clicks(gains: Sequence[float], rng: np.random.Generator, max_gain: float = 2.0,
                   stop_after_click: float = 0.5) -> list[int]:
    """Positions clicked by a simulated user who scans top-down, clicks an item with probability
    gain / max_gain (so irrelevant items are never clicked), and leaves after a click with probability
    `stop_after_click`."""
    clicks = []
    for position, gain in enumerate(gains):
        if rng.random() < gain / max_gain:
            clicks.append(position)
            if rng.random() < stop_after_click:
                break
    return clicks


def simulate_interleaving(rankings_a: dict, rankings_b: dict, gains: dict, k: int = 10, seed: int = SEED,
                          impressions_per_query: int = 1,
                          click_model: Callable[[Sequence[float], np.random.Generator], list[int]] = cascade_clicks
                          ) -> pd.DataFrame:
    """One row per impression: query, clicks credited to a and to b, and the winner ("a", "b" or "tie").

    `rankings_*` map query → ranked item ids; `gains` maps query → {item: gain} (unjudged items gain 0).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for query in rankings_a:
        if query not in rankings_b:
            raise KeyError(f"query {query!r} has no ranking from system b")
        judged = gains.get(query, {})
        for _ in range(impressions_per_query):
            items, team = team_draft(list(rankings_a[query]), list(rankings_b[query]), k, rng)
            clicked = click_model([judged.get(item, 0.0) for item in items], rng)
            credit_a = sum(team[c] == "a" for c in clicked)
            credit_b = len(clicked) - credit_a
            rows.append({"query": query, "clicks_a": credit_a, "clicks_b": credit_b,
                         "winner": "a" if credit_a > credit_b else "b" if credit_b > credit_a else "tie"})
    return pd.DataFrame(rows, columns=["query", "clicks_a", "clicks_b", "winner"])


def interleaving_preference(outcomes: pd.DataFrame) -> float:
    """Share of decided impressions won by b, minus one half (0 = no preference; > 0 prefers b)."""
    decided = outcomes[outcomes["winner"] != "tie"]
    if decided.empty:
        return 0.0
    return float((decided["winner"] == "b").mean() - 0.5)


def impressions_to_detect(rankings_a: dict, rankings_b: dict, gains: dict, sizes: Sequence[int], k: int = 10,
                          trials: int = 50, alpha: float = 0.05, seed: int = SEED) -> pd.DataFrame:
    """For each number of impressions, the share of simulated experiments in which a sign test on the
    decided impressions finds the true winner significant at level `alpha` (the interleaving's power)."""
    from scipy.stats import binomtest

    rng = np.random.default_rng(seed)
    queries = list(rankings_a)
    full = simulate_interleaving(rankings_a, rankings_b, gains, k=k, seed=seed, impressions_per_query=1)
    truth = "b" if interleaving_preference(full) > 0 else "a"
    rows = []
    for size in sizes:
        hits = 0
        for _ in range(trials):
            chosen = rng.choice(len(queries), size=size, replace=True)
            sample_a = {i: rankings_a[queries[q]] for i, q in enumerate(chosen)}
            sample_b = {i: rankings_b[queries[q]] for i, q in enumerate(chosen)}
            sample_gains = {i: gains.get(queries[q], {}) for i, q in enumerate(chosen)}
            out = simulate_interleaving(sample_a, sample_b, sample_gains, k=k, seed=int(rng.integers(2**31)))
            decided = out[out["winner"] != "tie"]
            if len(decided):
                wins = int((decided["winner"] == truth).sum())
                if binomtest(wins, len(decided), 0.5, alternative="greater").pvalue < alpha / 2:
                    hits += 1
        rows.append({"impressions": size, "power": hits / trials})
    return pd.DataFrame(rows)
