"""The served API on a tiny catalogue: right answers, and 4xx (never 5xx) for bad input."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ecomrec import config as C
from ecomrec.models.pipeline import SearchPipeline
from ecomrec.models.search import BM25Index, DenseIndex, encode
from ecomrec.recommend.models import ItemKNN
from ecomrec.serve.api import MAX_QUERY_CHARS, Service, clean_query, create_app

PRODUCTS = ["cordless drill driver kit 20v", "white interior wall paint 1 gal", "garden hose 50 ft",
            "chrome kitchen faucet with sprayer", "round closed front toilet seat", "claw hammer 16 oz"]
ITEMS = ["stapler", "staples box", "printer paper ream", "ballpoint pens", "desk lamp"]


@pytest.fixture(scope="module")
def client(minilm):
    from fastapi.testclient import TestClient

    events = pd.DataFrame({C.COL_USER: ["u1", "u1", "u2", "u2", "u3"],
                           C.COL_ITEM: ["stapler", "staples box", "stapler", "staples box", "stapler"]})
    product_ids = np.arange(100, 100 + len(PRODUCTS))
    service = Service(product_ids=product_ids, product_titles=np.array(PRODUCTS), encoder=minilm,
                      index=DenseIndex(product_ids, encode(minilm, PRODUCTS)),
                      recommender=ItemKNN(ITEMS).fit(events), item_ids=np.array(ITEMS), item_titles=np.array(ITEMS),
                      item_embeddings=encode(minilm, ITEMS), bm25=BM25Index(product_ids, PRODUCTS),
                      pipeline=SearchPipeline(dense_weight=0.5, depth=10, rerank_weight=0.5))
    client = TestClient(create_app(service))
    client.app_service = service
    return client


def test_clean_query():
    assert clean_query("  drill ") == "drill"
    for bad, message in [("", "empty"), ("   ", "empty"), ("x" * (MAX_QUERY_CHARS + 1), "longer"),
                         ("dri\x00ll", "control"), ("?!-", "no letter")]:
        with pytest.raises(ValueError, match=message):
            clean_query(bad)


def test_search_finds_the_product(client):
    response = client.get("/search", params={"q": "CORDLESS DRILL", "k": 3})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3 and results[0]["product_id"] == 100 and results[0]["title"] == PRODUCTS[0]
    assert client.post("/search", json={"q": "toilet seat", "k": 1}).json()["results"][0]["product_id"] == 104


def test_hybrid_search_is_the_default_and_fuses_bm25_with_the_dense_index(client):
    service = client.app_service
    hybrid = client.get("/search", params={"q": "claw hammer", "k": 6}).json()
    dense = client.get("/search", params={"q": "claw hammer", "k": 6, "mode": "dense"}).json()
    assert hybrid["mode"] == "hybrid" and dense["mode"] == "dense"
    assert hybrid["results"][0]["product_id"] == dense["results"][0]["product_id"] == 105
    # only the hammer shares a word with the query: BM25 puts every other product at 0, so the hybrid
    # score of the hammer is 0.5 (BM25) + 0.5 (its dense score, scaled) = 1
    assert hybrid["results"][0]["score"] == pytest.approx(1.0)
    assert [r["score"] for r in hybrid["results"]] == sorted((r["score"] for r in hybrid["results"]), reverse=True)
    assert client.post("/search", json={"q": "toilet seat", "k": 1, "mode": "dense"}).json()["results"][0]["product_id"] == 104
    assert service.modes == ("hybrid", "dense")
    assert client.get("/search", params={"q": "drill", "mode": "bm25"}).status_code == 422
    with pytest.raises(ValueError, match="both"):
        Service(product_ids=service.product_ids, product_titles=service.product_titles, encoder=service.encoder,
                index=service.index, recommender=service.recommender, item_ids=service.item_ids,
                item_titles=service.item_titles, item_embeddings=service.item_embeddings, bm25=service.bm25)


def test_a_service_without_bm25_serves_dense_search_only(client):
    from fastapi.testclient import TestClient

    s = client.app_service
    dense_only = Service(product_ids=s.product_ids, product_titles=s.product_titles, encoder=s.encoder, index=s.index,
                         recommender=s.recommender, item_ids=s.item_ids, item_titles=s.item_titles,
                         item_embeddings=s.item_embeddings)
    dense_client = TestClient(create_app(dense_only))
    assert dense_client.get("/search", params={"q": "drill"}).json()["mode"] == "dense"
    refused = dense_client.get("/search", params={"q": "drill", "mode": "hybrid"})
    assert refused.status_code == 422 and "not served here" in refused.json()["detail"]


def test_recommend_and_similar(client):
    from fastapi.testclient import TestClient

    recs = client.get("/recommend", params={"user_id": "u3"}).json()["results"]
    assert recs[0]["item_id"] == "staples box"  # co-occurs with u3's stapler
    assert "stapler" not in [r["item_id"] for r in recs]  # history never comes back
    similar = client.get("/similar", params={"item_id": "stapler", "k": 2}).json()["results"]
    assert [r["item_id"] for r in similar][0] == "staples box" and "stapler" not in [r["item_id"] for r in similar]
    assert client.get("/health").json() == {"status": "ok"}  # no process internals by default
    detailed = TestClient(create_app(client.app_service, health_details=True)).get("/health").json()
    assert detailed["status"] == "ok" and detailed["products"] == len(PRODUCTS) and detailed["users"] == 3


@pytest.mark.parametrize("path, params, status", [
    ("/search", {}, 422), ("/search", {"q": ""}, 422), ("/search", {"q": "   "}, 422),
    ("/search", {"q": "x" * (MAX_QUERY_CHARS + 1)}, 422), ("/search", {"q": "drill\x07"}, 422),
    ("/search", {"q": "drill", "k": 0}, 422), ("/search", {"q": "drill", "k": 101}, 422),
    ("/search", {"q": "drill", "k": "ten"}, 422), ("/recommend", {"user_id": "nobody"}, 404),
    ("/recommend", {}, 422), ("/recommend", {"user_id": "u" * 65}, 422), ("/similar", {"item_id": "nothing"}, 404),
])
def test_bad_input_is_a_client_error(client, path, params, status):
    assert client.get(path, params=params).status_code == status


@pytest.mark.parametrize("body", [{"q": 123}, {"q": ["drill"]}, {"q": None}, {"k": 3}, {"q": "drill", "k": -1}, {}])
def test_non_text_query_bodies_are_rejected(client, body):
    assert client.post("/search", json=body).status_code == 422


def test_odd_but_valid_text_is_served(client):
    for q in ["perceuse sans fil", "drill 🔨", "'; DROP TABLE products; --", "%00%ff", "ドリル", "1/2 in."]:
        response = client.get("/search", params={"q": q})
        assert response.status_code == 200, q
    response = client.get("/search?q=%ff%fe")  # bytes that are not UTF-8
    assert response.status_code == 400 and response.json() == {"detail": "the request is not valid UTF-8"}


def test_one_thread_per_worker_limits_every_native_pool():
    # in a fresh process: the limits are process-wide and would slow the other tests down
    code = ("import numpy, torch, faiss\n"
            "from ecomrec.serve.api import one_thread_per_worker\n"
            "assert torch.get_num_threads() > 1 or __import__('os').cpu_count() == 1\n"
            "pools = one_thread_per_worker()\n"
            "assert {p['internal_api'] for p in pools} >= {'openblas'}, pools\n"
            "assert all(p['num_threads'] == 1 for p in pools), pools\n"
            "assert torch.get_num_threads() == 1\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_make_serve_runs_the_server_command_that_the_load_test_loads(monkeypatch):
    from ecomrec.serve import __main__ as serve_main
    from ecomrec.serve.api import server_command, usable_cores

    calls = []
    monkeypatch.setattr(serve_main.os, "execv", lambda path, args: calls.append((path, args)))
    serve_main.main(["--port", "8123"])
    [(path, command)] = calls
    assert path == command[0] and command == server_command(8123)
    assert command[command.index("--host") + 1] == "127.0.0.1" and command[command.index("--port") + 1] == "8123"
    assert {"uvloop", "httptools"} <= set(command) and "ecomrec.serve.api:app_from_env" in command
    assert command[command.index("--workers") + 1] == str(usable_cores())  # one worker process per core


def test_the_worker_count_can_be_set_and_must_be_positive(monkeypatch):
    from ecomrec.serve import __main__ as serve_main
    from ecomrec.serve.api import server_command

    calls = []
    monkeypatch.setattr(serve_main.os, "execv", lambda path, args: calls.append(args))
    serve_main.main(["--workers", "3"])
    assert calls[0][calls[0].index("--workers") + 1] == "3"
    with pytest.raises(ValueError, match="positive"):
        server_command(8000, workers=0)
    with pytest.raises(SystemExit):
        serve_main.main(["--workers", "0"])


def test_endpoints_answer_on_the_event_loop_not_a_thread_pool(client):
    # each worker process answers one request at a time in place (see the module docstring): an endpoint
    # that became a plain `def` would go back to FastAPI's thread pool
    import inspect

    for route in client.app.routes:
        if getattr(route, "path", "") in ("/search", "/recommend", "/similar", "/health"):
            assert inspect.iscoroutinefunction(route.endpoint), route.path


def test_every_nth_response_of_a_connection_closes_it():
    import asyncio

    from ecomrec.serve.api import CloseAfterRequests

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = CloseAfterRequests(app, requests=3, max_tracked=2)

    def closes(client) -> bool:
        sent = []

        async def send(message):
            sent.append(message)

        asyncio.run(middleware({"type": "http", "client": client}, None, send))
        assert sent[1]["body"] == b"ok"
        return (b"connection", b"close") in sent[0]["headers"]

    a, b = ("127.0.0.1", 50001), ("127.0.0.1", 50002)
    assert [closes(a) for _ in range(3)] == [False, False, True]  # the 3rd request on a connection closes it
    assert [closes(b), closes(a), closes(b), closes(b)] == [False, False, False, True]  # counted per connection
    assert list(middleware.counts) == [a]  # b went back to zero; a has served 1 since it reconnected
    closes(("127.0.0.1", 50003)), closes(("127.0.0.1", 50004))  # past max_tracked the oldest count is dropped
    assert list(middleware.counts) == [("127.0.0.1", 50003), ("127.0.0.1", 50004)]
    with pytest.raises(ValueError, match="positive"):
        CloseAfterRequests(app, requests=0)


def test_the_service_recycles_keep_alive_connections(client):
    from ecomrec.serve.api import KEEPALIVE_REQUESTS

    closing = [client.get("/health").headers.get("connection") == "close" for _ in range(2 * KEEPALIVE_REQUESTS)]
    first, second = [i for i, close in enumerate(closing) if close]  # the test client is one connection
    assert second - first == KEEPALIVE_REQUESTS
