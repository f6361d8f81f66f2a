"""Latency and throughput of a model call, measured the way a service sees it: one call per request."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
from ecomrec import config as C


def measure_latency(call: Callable[[list], object], texts: Sequence, batch_size: int = 1, calls: int = 200,
                    warmup: int = 5, seed: int = C.SEED, max_seconds: float | None = None,
                    min_calls: int = 50) -> dict[str, float]:
    """Time up to `calls` calls of `call(batch)` on batches of `batch_size` texts drawn (seeded) from `texts`.

    With `max_seconds`, timing ends once the timed calls have taken that long and at least `min_calls` of them
    (all `calls`, if fewer) were timed: a slow variant is timed on fewer calls instead of for minutes. Returns
    p50/p95/p99 latency per call in ms, throughput in texts/s and the number of calls timed (`calls`); `warmup`
    calls run first and are not counted (first calls pay for memory allocation and kernel selection).
    """
    if batch_size < 1 or calls < 1 or min_calls < 1:
        raise ValueError("batch_size, calls and min_calls must be positive")
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    if len(texts) == 0:
        raise ValueError("no texts to time")
    rng = np.random.default_rng(seed)
    batches = [[texts[i] for i in rng.integers(0, len(texts), size=batch_size)] for _ in range(warmup + calls)]
    for batch in batches[:warmup]:
        call(batch)
    times, total = [], 0.0
    for batch in batches[warmup:]:
        start = time.perf_counter()
        call(batch)
        times.append(time.perf_counter() - start)
        total += times[-1]
        if max_seconds is not None and len(times) >= min(min_calls, calls) and total >= max_seconds:
            break
    ms = np.asarray(times) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "texts_per_second": float(batch_size * len(times) / total),
            "calls": len(times)}
