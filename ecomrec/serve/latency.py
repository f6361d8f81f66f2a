"""Latency and throughput of a model call, measured the way a service sees it: one call per request."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from ecomrec import config as C


def measure_latency(call: Callable[[list], object], texts: Sequence, batch_size: int = 1, calls: int = 200,
                    warmup: int = 5, seed: int = C.SEED) -> dict[str, float]:
    """Time `calls` calls of `call(batch)` on batches of `batch_size` texts drawn (seeded) from `texts`.

    Returns p50/p95/p99 latency per call in ms and throughput in texts/s; `warmup` calls run first and
    are not counted (first calls pay for memory allocation and kernel selection).
    """
    if batch_size < 1 or calls < 1:
        raise ValueError("batch_size and calls must be positive")
    if len(texts) == 0:
        raise ValueError("no texts to time")
    rng = np.random.default_rng(seed)
    batches = [[texts[i] for i in rng.integers(0, len(texts), size=batch_size)] for _ in range(warmup + calls)]
    for batch in batches[:warmup]:
        call(batch)
    times = np.empty(calls)
    for n, batch in enumerate(batches[warmup:]):
        start = time.perf_counter()
        call(batch)
        times[n] = time.perf_counter() - start
    ms = times * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "texts_per_second": float(batch_size * calls / times.sum())}
