"""A bounded loopback load test of the served API (`make bench`).

Starts the API (uvicorn on 127.0.0.1, one worker process per core unless told otherwise) on the profile's
artifacts, waits for /health, then
sends a fixed number of requests with a fixed concurrency: real test-split search queries, real users
and items, and a share of deliberately bad requests (which must get a 4xx). Prints and records per
endpoint the latency p50/p95/p99 (ms, client-side, so queueing is included), requests/s and the count
of responses by status class. Exits non-zero if any response is a 5xx or a connection fails.

It also measures the CPU time the server and the load generator spend per request. In a closed loop
(a new request as soon as one returns) with `concurrency` requests in flight on `cores` cores, Little's
law bounds the mean latency from below: mean ≥ concurrency × CPU per request / cores. That floor says
how far a latency goal is from what the hardware can give, before any queueing noise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec import reporting
from ecomrec.serve.api import HEALTH_DETAILS_ENV, server_command, usable_cores

MIX = {"search": 0.70, "recommend": 0.15, "similar": 0.10, "bad": 0.05}
BAD_REQUESTS = [("/search", {"q": ""}), ("/search", {"q": "   "}), ("/search", {"q": "x" * 500}),
                ("/search", {"q": "drill", "k": 0}), ("/recommend", {"user_id": "no-such-user"}),
                ("/similar", {"item_id": "no-such-item"}), ("/search", {})]


def request_plan(frames: dict, n: int, seed: int = C.SEED) -> list[tuple[str, str, dict]]:
    """`n` (endpoint label, path, params) drawn with MIX's shares from real queries, users and items."""
    rng = np.random.default_rng(seed)
    queries = frames["homedepot/queries"].set_index(C.COL_QUERY_ID)[C.COL_QUERY]
    test_queries = queries.loc[frames["homedepot/judgments_test"][C.COL_QUERY_ID].unique()].to_numpy()
    users = frames["office/interactions"][C.COL_USER].unique()
    items = frames["office/items"][C.COL_ITEM].to_numpy()
    kinds = rng.choice(list(MIX), size=n, p=list(MIX.values()))
    plan = []
    for kind in kinds:
        if kind == "search":
            plan.append(("search", "/search", {"q": str(rng.choice(test_queries)), "k": 10}))
        elif kind == "recommend":
            plan.append(("recommend", "/recommend", {"user_id": str(rng.choice(users)), "k": 10}))
        elif kind == "similar":
            plan.append(("similar", "/similar", {"item_id": str(rng.choice(items)), "k": 10}))
        else:
            path, params = BAD_REQUESTS[int(rng.integers(len(BAD_REQUESTS)))]
            plan.append(("bad request", path, params))
    return plan


async def _fire(base_url: str, plan: list, concurrency: int) -> pd.DataFrame:
    """Send `plan` with `concurrency` requests in flight (a closed loop over keep-alive connections).

    The client is aiohttp: on a loopback test the load generator shares the cores with the server, and
    aiohttp spends about a third of httpx's CPU time per request, which the server gets instead."""
    import aiohttp

    results = [None] * len(plan)
    pending = iter(range(len(plan)))  # shared by the workers of one event loop

    async def worker(session):
        for i in pending:
            label, path, params = plan[i]
            start = time.perf_counter()
            try:
                async with session.get(path, params=params) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0  # connection-level failure
            results[i] = (label, status, (time.perf_counter() - start) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return pd.DataFrame(results, columns=["endpoint", "status", "ms"])


def summarise(log: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """Per endpoint: requests, p50/p95/p99 ms, and counts of 2xx, 4xx, 5xx and failed connections."""
    rows = {}
    for endpoint, group in [*log.groupby("endpoint"), ("all", log)]:
        status = group["status"]
        rows[endpoint] = {"requests": len(group), "p50_ms": group["ms"].quantile(0.50),
                          "p95_ms": group["ms"].quantile(0.95), "p99_ms": group["ms"].quantile(0.99),
                          "2xx": int(status.between(200, 299).sum()), "4xx": int(status.between(400, 499).sum()),
                          "5xx": int((status >= 500).sum()), "failed": int((status == 0).sum())}
    table = pd.DataFrame(rows).T
    table.loc["all", "requests_per_second"] = len(log) / seconds
    return table


def latency_floor_ms(concurrency: int, cpu_ms_per_request: float, cores: int) -> float:
    """Little's law for a closed loop: the least mean latency (ms) with `concurrency` requests in flight
    when each costs `cpu_ms_per_request` of CPU time and `cores` cores serve them all."""
    if concurrency < 1 or cores < 1 or cpu_ms_per_request < 0:
        raise ValueError("concurrency and cores must be positive and the CPU time not negative")
    return concurrency * cpu_ms_per_request / cores


def _own_cpu_seconds(process) -> float:
    """User + system CPU seconds of one process, its children not included."""
    times = process.cpu_times()
    return times.user + times.system


def _cpu_seconds(process) -> dict[int, float]:
    """CPU seconds by pid of a process and of its live children (uvicorn's worker processes)."""
    return {proc.pid: _own_cpu_seconds(proc) for proc in [process, *process.children(recursive=True)]}


def _wait_until_healthy(server, base_url: str, workers: int, timeout: float) -> None:
    """Poll /health (a new connection each time) until `workers` different worker processes have answered:
    a load test started while one is still loading would pin its keep-alive connections on the others."""
    import httpx

    deadline, seen = time.monotonic() + timeout, set()
    while len(seen) < workers:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode} before it was healthy")
        try:
            response = httpx.get(f"{base_url}/health", timeout=2.0)
            if response.status_code == 200:
                seen.add(response.json().get("worker_pid"))
        except httpx.HTTPError:
            pass
        if len(seen) < workers and time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {workers} worker processes were healthy within {timeout:.0f} s")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(profile: str, artifact_dir: str, requests: int, concurrency: int, encoder: str,
        seed: int = C.SEED, startup_timeout: float = 180.0, workers: int | None = None) -> pd.DataFrame:
    """Start the server (`workers` processes, default one per core), run the load test, stop the server;
    returns `summarise`'s table, whose "all" row also holds the server's (all its processes) and this
    client's CPU ms per request, the worker count and the Little's-law latency floor."""
    import psutil

    from ecomrec.data.prepare import load_prepared

    plan = request_plan(load_prepared(artifact_dir, profile), requests, seed)
    port = _free_port()
    env = {**os.environ, "ECOMREC_PROFILE": profile, "ECOMREC_ARTIFACT_DIR": artifact_dir, "ECOMREC_ENCODER": encoder,
           HEALTH_DETAILS_ENV: "1"}  # /health then names the worker process that answered
    workers = usable_cores() if workers is None else workers
    server = subprocess.Popen(server_command(port, log_level="warning", workers=workers), env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(server, base_url, workers, startup_timeout)
        _run_async(_fire(base_url, plan[: min(200, len(plan))], concurrency))  # warm-up, not counted
        server_process, client_process = psutil.Process(server.pid), psutil.Process()
        # the client's own time only: the server is this process's child
        server_before, client_before = _cpu_seconds(server_process), _own_cpu_seconds(client_process)
        start = time.perf_counter()
        log = _run_async(_fire(base_url, plan, concurrency))
        seconds = time.perf_counter() - start
        server_by_pid = {pid: cpu - server_before.get(pid, 0.0) for pid, cpu in _cpu_seconds(server_process).items()}
        client_cpu = _own_cpu_seconds(client_process) - client_before
    finally:
        server.terminate()
        server.wait(timeout=30)
    table = summarise(log, seconds)
    cores = usable_cores()
    server_cpu = sum(server_by_pid.values())
    per_request = {"server_cpu_ms_per_request": 1000 * server_cpu / len(plan),
                   "client_cpu_ms_per_request": 1000 * client_cpu / len(plan)}
    for column, value in per_request.items():
        table.loc["all", column] = value
    table.loc["all", "cores"] = cores
    table.loc["all", "workers"] = workers
    # how evenly the work spread: the busiest process's share of the server's CPU (1 / workers when even)
    # (with several workers, uvicorn's supervising process does no request work: it is not a worker)
    worker_cpu = [cpu for pid, cpu in server_by_pid.items() if workers == 1 or pid != server.pid]
    table.loc["all", "busiest_worker_cpu_share"] = max(worker_cpu) / sum(worker_cpu) if sum(worker_cpu) else float("nan")
    table.loc["all", "mean_ms"] = log["ms"].mean()
    table.loc["all", "latency_floor_ms"] = latency_floor_ms(concurrency, sum(per_request.values()), cores)
    return table


def _run_async(coroutine):
    """Run a coroutine to completion in a fresh thread (a notebook's kernel already runs an event loop)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def record_table(table: pd.DataFrame, prefix: str = "deploy/bench") -> None:
    """Record every figure of `summarise`'s table under `<prefix>/<endpoint>/<column>`."""
    for endpoint, row in table.iterrows():
        for column, value in row.items():
            if pd.notna(value):
                reporting.record(f"{prefix}/{endpoint.replace(' ', '_')}/{column}", float(value))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full", choices=sorted(C.PROFILES))
    parser.add_argument("--artifact-dir", default="artifacts")
    parser.add_argument("--report-dir", default="reports")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--encoder", default="onnx-int8", choices=("onnx-int8", "onnx", "torch"))
    parser.add_argument("--workers", type=int, default=usable_cores(),
                        help="server worker processes (default: one per core)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.workers < 1:
        parser.error("--requests, --concurrency and --workers must be positive")
    table = run(args.profile, args.artifact_dir, args.requests, args.concurrency, args.encoder, workers=args.workers)
    reporting.start("bench", Path(args.report_dir) / args.profile / "metrics")
    record_table(table)
    reporting.record("deploy/bench/all/concurrency", args.concurrency)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:,.1f}".format):
        print(table)
    bad = int(table.loc["all", "5xx"] + table.loc["all", "failed"])
    search_p95 = table.loc["search", "p95_ms"] if "search" in table.index else float("nan")
    every = table.loc["all"]
    print(f"search p95 {search_p95:.1f} ms (goal ≤ 30 ms on 2 CPU cores); 5xx or failed: {bad}")
    workers = int(every["workers"])
    print(f"CPU per request: server {every['server_cpu_ms_per_request']:.1f} ms ({workers} worker "
          f"process{'es' if workers > 1 else ''}, the busiest {every['busiest_worker_cpu_share']:.0%} of it) + load generator "
          f"{every['client_cpu_ms_per_request']:.1f} ms on {int(every['cores'])} cores → with {args.concurrency} in flight "
          f"the mean latency cannot be below {every['latency_floor_ms']:.1f} ms (Little's law); measured mean "
          f"{every['mean_ms']:.1f} ms")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
