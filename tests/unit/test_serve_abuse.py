"""The service under abuse: bounded bodies, deadlines, a failing index, and a concurrent mix of good and bad
requests over a real loopback server (bounded in count and time)."""

import asyncio
import json
import logging
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.recommend.models import ItemKNN
from ecomrec.serve.api import Service, create_app
from ecomrec.serve.guards import MAX_BODY_BYTES, GuardRequests
from ecomrec.serve.index import HNSWIndex

PRODUCTS = ["cordless drill driver kit 20v", "white interior wall paint 1 gal", "garden hose 50 ft",
            "chrome kitchen faucet with sprayer", "round closed front toilet seat", "claw hammer 16 oz",
            "led light bulb 60 watt", "stainless steel kitchen sink", "vinyl window blinds", "ceiling fan with light"]
ITEMS = ["stapler", "staples box", "printer paper ream", "ballpoint pens", "desk lamp"]


@pytest.fixture(scope="module")
def service(minilm):
    from ecomrec.models.search import encode

    events = pd.DataFrame({C.COL_USER: ["u1", "u1", "u2", "u2", "u3"],
                           C.COL_ITEM: ["stapler", "staples box", "stapler", "staples box", "stapler"]})
    product_ids = np.arange(100, 100 + len(PRODUCTS))
    return Service(product_ids=product_ids, product_titles=np.array(PRODUCTS), encoder=minilm,
                   index=HNSWIndex(product_ids, encode(minilm, PRODUCTS), neighbours=4, ef_search=16),
                   recommender=ItemKNN(ITEMS).fit(events), item_ids=np.array(ITEMS), item_titles=np.array(ITEMS),
                   item_embeddings=encode(minilm, ITEMS))


@pytest.fixture(scope="module")
def client(service):
    from fastapi.testclient import TestClient

    return TestClient(create_app(service))


def test_search_is_served_through_the_hnsw_index(client):
    results = client.get("/search", params={"q": "garden hose", "k": 10}).json()["results"]
    assert results[0]["product_id"] == 102 and len(results) == 10


def test_a_failing_index_is_a_logged_503_not_a_crash(service, caplog, monkeypatch):
    from fastapi.testclient import TestClient

    broken = HNSWIndex.__new__(HNSWIndex)
    broken.ids, broken.index = service.index.ids, service.index.index

    class Padded:  # faiss pads with -1 when its walk finds fewer than k vectors
        hnsw = service.index.index.hnsw

        def search(self, queries, k, params=None):  # faiss's signature: the search parameters are optional
            return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1)

    broken.index = Padded()
    monkeypatch.setattr(service, "index", broken)
    with caplog.at_level(logging.ERROR, logger="ecomrec.serve"):
        response = TestClient(create_app(service)).get("/search", params={"q": "garden hose"})
    assert response.status_code == 503
    assert response.json() == {"detail": "the search index could not answer this query"}
    assert "fewer than 10 results" in caplog.text


def test_oversized_bodies_get_413(client):
    big = json.dumps({"q": "drill", "pad": "x" * MAX_BODY_BYTES}).encode()
    for response in (client.post("/search", content=big, headers={"content-type": "application/json"}),
                     client.post("/search", content=iter([big[:2000], big[2000:]]))):  # chunked: no Content-Length
        assert response.status_code == 413
        assert response.json() == {"detail": f"the request body is larger than {MAX_BODY_BYTES} bytes"}
    assert client.post("/search", json={"q": "drill", "k": 2}).status_code == 200  # a normal body still passes


def _call(middleware, messages, path="/search"):
    """Run one request through ASGI `middleware`; `messages` are what the client sends, with delays."""
    sent = []

    async def receive():
        delay, message = messages.pop(0) if messages else (3600, {"type": "http.disconnect"})
        await asyncio.sleep(delay)
        return message

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"]) if len(sent) > 1 else None


async def _slow_app(scope, receive, send):
    await receive()
    await asyncio.sleep(5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


def test_requests_have_a_deadline():
    guard = GuardRequests(_slow_app, timeout_s=0.2)
    start = time.perf_counter()
    assert _call(guard, [(0, {"type": "http.request", "body": b"{}"})]) == (504, {"detail": "no answer within 0.2 s"})
    slow_body = [(0, {"type": "http.request", "body": b"{", "more_body": True}),
                 (1.0, {"type": "http.request", "body": b"}"})]
    assert _call(guard, slow_body) == (408, {"detail": "the request body did not arrive within 0.2 s"})
    assert time.perf_counter() - start < 2.0
    with pytest.raises(ValueError):
        GuardRequests(_slow_app, timeout_s=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_good_and_bad_requests_over_loopback(service):
    """2,000 requests, 32 in flight, against a real uvicorn server on 127.0.0.1: no 5xx, no failed connection,
    and every valid answer identical to the answer to the same request sent alone."""
    import aiohttp
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="error",
                                           loop="asyncio", http="httptools"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    good = [("GET", "/search", {"q": q, "k": 5}, None) for q in ("cordless drill", "garden hose", "kitchen sink",
                                                                    "ceiling fan", "paint white")]
    good += [("GET", "/recommend", {"user_id": "u3", "k": 3}, None), ("GET", "/similar", {"item_id": "stapler"}, None),
             ("POST", "/search", None, b'{"q": "toilet seat", "k": 2}')]
    bad = [("GET", "/search", {"q": ""}, None), ("GET", "/search", {"q": "drill", "k": 0}, None),
           ("GET", "/search?q=%ff%fe", None, None), ("GET", "/recommend", {"user_id": "nobody"}, None),
           ("POST", "/search", None, b"not json"), ("POST", "/search", None, b'{"q": 42}'),
           ("POST", "/search", None, b'{"q": "' + b"x" * 6000 + b'"}'), ("GET", "/nowhere", None, None)]
    rng = np.random.default_rng(C.SEED)
    picks = rng.integers(len(good) + len(bad), size=2000)
    plan = [(good + bad)[i] for i in picks]

    async def fire(requests, concurrency):
        results = [None] * len(requests)
        pending = iter(range(len(requests)))

        async def worker(session):
            for i in pending:
                method, path, params, body = requests[i]
                try:
                    async with session.request(method, path, params=params, data=body,
                                               headers={"content-type": "application/json"} if body else None) as r:
                        results[i] = (r.status, await r.read())
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    results[i] = (0, repr(error).encode())

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", timeout=timeout,
                                         connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(concurrency))), timeout=240)
        return results

    try:
        alone = dict(zip(range(len(good)), asyncio.run(fire(good, 1))))
        together = asyncio.run(fire(plan, 32))
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    statuses = np.array([status for status, _ in together])
    assert (statuses > 0).all(), [body for status, body in together if status == 0][:3]
    assert not (statuses >= 500).any(), sorted(set(statuses.tolist()))
    for pick, (status, body) in zip(picks.tolist(), together):
        if pick < len(good):
            assert alone[pick][0] == 200 and (status, body) == alone[pick], good[pick]
        else:
            assert 400 <= status < 500, (bad[pick - len(good)], status)
