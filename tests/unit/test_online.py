"""A/B sample size by hand, and team-draft interleaving's defining properties."""

import numpy as np
import pytest

from ecomrec import online as O


def test_ab_sample_size_by_hand():
    # 2 σ² (1.95996 + 0.84162)² / δ² = 2 · 7.8489 / 0.01 = 1569.8 → 1570 per arm
    assert O.ab_sample_size(0.1, 1.0) == 1570
    assert O.ab_sample_size(0.05, 1.0) == pytest.approx(4 * 1570, rel=0.001)  # half the lift, 4x the users
    with pytest.raises(ValueError):
        O.ab_sample_size(0.0, 1.0)


def test_team_draft_properties():
    rng = np.random.default_rng(0)
    a, b = list("abcdefgh"), list("hgfedcba")
    for _ in range(50):
        items, team = O.team_draft(a, b, 6, rng)
        assert len(items) == len(set(items)) == 6
        assert abs(team.count("a") - team.count("b")) <= 1
        for side, ranking in (("a", a), ("b", b)):
            mine = [i for i, t in zip(items, team) if t == side]
            assert mine == sorted(mine, key=ranking.index)  # each team adds items in its own order
    items, _ = O.team_draft(a, a, 8, rng)
    assert items == a  # identical rankings interleave to themselves
    assert O.team_draft(["x"], ["y"], 5, rng)[0] in (["x", "y"], ["y", "x"])  # stops when both run out


def test_interleaving_prefers_the_better_ranker():
    rng = np.random.default_rng(1)
    queries = range(300)
    gains = {q: {f"r{q}": 2.0, f"s{q}": 1.0} for q in queries}
    good = {q: [f"r{q}", f"s{q}"] + [f"n{q}_{i}" for i in range(8)] for q in queries}
    bad = {q: [f"n{q}_{i}" for i in range(8)] + [f"s{q}", f"r{q}"] for q in queries}
    out = O.simulate_interleaving(good, bad, gains, k=10, seed=2)
    assert len(out) == 300 and O.interleaving_preference(out) < -0.4  # b (bad) loses nearly every decided impression
    same = O.simulate_interleaving(good, good, gains, k=10, seed=3, impressions_per_query=4)
    assert abs(O.interleaving_preference(same)) < 0.08
    assert O.cascade_clicks([0.0] * 10, rng) == []
    power = O.impressions_to_detect(good, bad, gains, sizes=(5, 200), trials=20, seed=4)
    assert power["power"].iloc[-1] == 1.0 and power["power"].iloc[0] <= power["power"].iloc[-1]
