import numpy as np
import pandas as pd
import pytest

from ecomrec.data.clean import order_events
from ecomrec.data.split import leave_one_out_split, split_queries, temporal_split


def queries(n=100):
    return pd.DataFrame({"query_id": np.arange(n), "query": [f"q{i}" for i in range(n)]}).astype({"query": "str"})


def test_split_queries_sizes_disjoint_and_seeded():
    a = split_queries(queries(), n_valid=10, n_test=20, seed=1)
    assert a["split"].value_counts().to_dict() == {"train": 70, "test": 20, "valid": 10}
    assert a.groupby("query")["split"].nunique().max() == 1
    assert a.equals(split_queries(queries(), 10, 20, seed=1))
    assert not a.equals(split_queries(queries(), 10, 20, seed=2))
    shuffled = queries().sample(frac=1, random_state=0)
    assert split_queries(shuffled, 10, 20, seed=1).set_index("query_id")["split"].sort_index().equals(
        a.set_index("query_id")["split"])


def test_split_queries_rejects_bad_sizes_and_duplicates():
    with pytest.raises(ValueError, match="cannot take"):
        split_queries(queries(10), 5, 5)
    dup = queries(10).assign(query="same")
    with pytest.raises(ValueError, match="unique"):
        split_queries(dup, 1, 1)


def events():
    # user a: 4 events, the last two on the same day; user b: 3 events
    return pd.DataFrame({"user_id": ["a"] * 4 + ["b"] * 3, "item_id": ["i1", "i2", "i4", "i3", "i1", "i2", "i3"],
                         "timestamp": [1, 2, 3, 3, 10, 20, 30], "rating": [5.0] * 7})


def test_leave_one_out_last_is_test_second_last_is_valid():
    parts = leave_one_out_split(events())
    # user a's last two events tie (day 3): `order_events`' rule decides which is valid and which is test
    tied = order_events(events()[events()["user_id"] == "a"], "user_id", "item_id", "timestamp")["item_id"].tolist()[-2:]
    assert sorted(tied) == ["i3", "i4"]
    assert parts["test"].set_index("user_id")["item_id"].to_dict() == {"a": tied[1], "b": "i3"}  # tie → the hash rule
    assert parts["valid"].set_index("user_id")["item_id"].to_dict() == {"a": tied[0], "b": "i2"}
    assert sorted(parts["train"]["item_id"]) == ["i1", "i1", "i2"]
    assert sum(len(p) for p in parts.values()) == len(events())


def test_leave_one_out_needs_three_events():
    with pytest.raises(ValueError, match="fewer than 3"):
        leave_one_out_split(events().iloc[:6].tail(4))


def test_temporal_split_orders_time_and_keeps_ties_together():
    rng = np.random.default_rng(0)
    ev = pd.DataFrame({"user_id": rng.integers(0, 30, 500).astype(str), "item_id": rng.integers(0, 40, 500).astype(str),
                       "timestamp": rng.integers(0, 50, 500)})
    parts = temporal_split(ev, 0.1, 0.1)
    assert parts["train"]["timestamp"].max() < parts["valid"]["timestamp"].min()
    assert parts["valid"]["timestamp"].max() < parts["test"]["timestamp"].min()
    assert sum(len(p) for p in parts.values()) == len(ev)
    assert 0.05 < len(parts["test"]) / len(ev) < 0.2


def test_temporal_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        temporal_split(events(), 0.6, 0.5)
