"""The load test's bookkeeping: the request mix and the summary table."""

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.serve import bench


def frames():
    return {"homedepot/queries": pd.DataFrame({C.COL_QUERY_ID: [1, 2, 3], C.COL_QUERY: ["drill", "paint", "hose"]}),
            "homedepot/judgments_test": pd.DataFrame({C.COL_QUERY_ID: [2, 3], C.COL_PRODUCT_ID: [9, 9]}),
            "office/interactions": pd.DataFrame({C.COL_USER: ["u1", "u2"], C.COL_ITEM: ["a", "b"]}),
            "office/items": pd.DataFrame({C.COL_ITEM: ["a", "b", "c"]})}


def test_request_plan_follows_the_mix_and_uses_test_queries_only():
    plan = bench.request_plan(frames(), 4_000, seed=1)
    shares = pd.Series([label for label, _, _ in plan]).value_counts(normalize=True)
    assert shares["search"] == pytest.approx(bench.MIX["search"], abs=0.03)
    assert shares["bad request"] == pytest.approx(bench.MIX["bad"], abs=0.02)
    assert {p["q"] for label, _, p in plan if label == "search"} == {"paint", "hose"}  # never a train query
    assert plan == bench.request_plan(frames(), 4_000, seed=1)


def test_summarise_by_hand():
    log = pd.DataFrame({"endpoint": ["search"] * 4 + ["bad request"] * 2,
                        "status": [200, 200, 200, 500, 422, 404], "ms": [1.0, 2.0, 3.0, 4.0, 1.0, 1.0]})
    table = bench.summarise(log, seconds=2.0)
    assert table.loc["search", "p50_ms"] == 2.5 and table.loc["search", "5xx"] == 1
    assert table.loc["bad request", "4xx"] == 2 and table.loc["all", "requests"] == 6
    assert table.loc["all", "requests_per_second"] == 3.0
    assert np.isclose(table.loc["search", "p99_ms"], np.quantile([1, 2, 3, 4], 0.99))


def test_latency_floor_is_littles_law():
    # 8 in flight, 7.5 ms of CPU each, 2 cores: 2 cores finish one request per 3.75 ms, so each waits 30 ms
    assert bench.latency_floor_ms(8, 7.5, 2) == 30.0
    assert bench.latency_floor_ms(16, 5.0, 4) == 20.0
    with pytest.raises(ValueError):
        bench.latency_floor_ms(0, 5.0, 2)


def test_measure_latency_counts_calls_and_orders_percentiles():
    import time

    from ecomrec.serve.latency import measure_latency

    seen = []

    def call(batch):
        seen.append(len(batch))
        time.sleep(0.002 if len(seen) % 10 else 0.02)  # every tenth call is slow

    out = measure_latency(call, ["a", "b", "c"], batch_size=4, calls=40, warmup=2)
    assert len(seen) == 42 and set(seen) == {4}
    assert 1.5 < out["p50_ms"] < out["p95_ms"] <= out["p99_ms"] and out["p99_ms"] > 15
    assert out["texts_per_second"] == pytest.approx(4 * 40 / (36 * 0.002 + 4 * 0.02), rel=0.5)
    assert out["calls"] == 40
    with pytest.raises(ValueError):
        measure_latency(call, [], batch_size=1)


def test_a_time_cap_ends_timing_but_never_below_the_minimum_number_of_calls():
    import time

    from ecomrec.serve.latency import measure_latency

    seen = []

    def call(batch):
        seen.append(batch)
        time.sleep(0.01)

    out = measure_latency(call, ["a"], calls=1_000, warmup=0, max_seconds=0.2, min_calls=5)
    assert 5 <= out["calls"] < 60 and len(seen) == out["calls"]  # about 20 calls of 10 ms, far from 1,000
    seen.clear()
    out = measure_latency(call, ["a"], calls=1_000, warmup=0, max_seconds=0.001, min_calls=12)
    assert out["calls"] == 12 == len(seen)  # the cap was reached at once: the minimum still holds
    assert measure_latency(call, ["a"], calls=3, warmup=0, max_seconds=0.001, min_calls=12)["calls"] == 3  # never above `calls`
    for bad in ({"max_seconds": 0}, {"min_calls": 0}):
        with pytest.raises(ValueError):
            measure_latency(call, ["a"], **bad)
