"""The served API: product search, recommendations and similar items over the project's artifacts.

    GET /search?q=cordless+drill&k=10     Home Depot products: `04`'s search pipeline's first stage, BM25 and the
                                          bi-encoder (query embedding → HNSW index) fused with the weight chosen
                                          on valid (`mode=hybrid`, the default when both are loaded), or the
                                          bi-encoder alone (`mode=dense`)
    POST /search  {"q": "...", "k": 10}   the same with a JSON body (a non-string `q` is a 422)
    GET /recommend?user_id=A2...&k=10     Amazon Office items (ItemKNN over all interactions)
    GET /similar?item_id=B00...&k=10      Amazon Office items nearest in content (MiniLM item embeddings)
    GET /health                           {"status": "ok"}; what is loaded, too, when the server runs with
                                          ECOMREC_HEALTH_DETAILS=1 (process internals stay private otherwise)

The pipeline's second stage, the cross-encoder, is not served: `07` measures what it costs per query against
the latency goal, and leaves putting it behind `/search` as an exercise.

Everything is loaded once, when the app is created. Bad input is the client's error (422: empty,
whitespace-only, over-long or control-character queries, k out of range; 404: unknown ids; 400: bytes that
are not UTF-8; 413: a body over 4 KiB; 408: a body too slow to arrive), never a 5xx. A 5xx means the server
failed: 503 when the search index returns fewer results than asked (logged with its reason), 504 when an
answer did not start within the request timeout (`guards.GuardRequests`).
Run it with `make serve` (`python -m ecomrec.serve`: uvicorn on 127.0.0.1, the command `server_command` builds).

How it uses the CPU: one worker process per core (`usable_cores`), each answering one request at a time
on its own event loop. The endpoints are `async` on purpose: their work is a few milliseconds of CPU
(a query embedding, an index lookup), so a worker computes it in place instead of handing it to a thread
pool — no thread hop per request, and no threads of one process queueing for the GIL. When this was
built (`make bench`'s load on 2 cores: 10,000 requests, 8 in flight, same encoder and index), plain `def`
endpoints on FastAPI's thread pool cost 3.3-3.4 ms of server CPU per request in two processes, async ones
2.7 ms; search p95 28-29 ms against 20-23 ms. The price: a worker busy with one request reads no other,
so an endpoint must stay short (bounded inputs: k ≤ 100, queries ≤ 200 characters) — a slow one would
stall every request queued on that worker.

Keep-alive and balance: the workers share one listening socket, and a keep-alive connection stays with the
worker that accepted it. A burst of new connections is often accepted by one worker alone (the first to
wake takes every pending one), and then the other core idles for the whole run: measured under `make
bench`, one worker did 100 % of the work and search p95 was 39 ms, against 28 ms when the split was even.
So the server answers every `KEEPALIVE_REQUESTS`-th request of a connection with `Connection: close`
(`CloseAfterRequests`, as nginx's `keepalive_requests`): the client reconnects, and the new connection goes
to whichever worker accepts it then. Measured (stand-in artifacts, 3 runs each): 20 requests per connection
kept the busiest worker at 50-51 % and search p95 at 24.7-28.5 ms; 5 cost more CPU in reconnects (p95 32.5).
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at run time.

import logging
import os
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd

from ecomrec import config as C
from ecomrec.serve.guards import MAX_BODY_BYTES, REQUEST_TIMEOUT_S, GuardRequests

MAX_QUERY_CHARS = 200
MAX_ID_CHARS = 64
MAX_K = 100
KEEPALIVE_REQUESTS = 20  # requests a keep-alive connection carries before the server closes it
ENCODERS = ("onnx-int8", "onnx", "torch")
FUSION_DEPTH = 100  # each first stage's list that hybrid search fuses: the depth `04` chose the fusion weight at
# uvloop's event loop and httptools' HTTP parser (C) instead of asyncio's loop and h11 (pure Python): less
# server CPU per request. `make serve` and `make bench` both serve through `server_command`.
SERVER_OPTIONS = ("--loop", "uvloop", "--http", "httptools")
HEALTH_DETAILS_ENV = "ECOMREC_HEALTH_DETAILS"  # 1: /health also says what is loaded (make bench reads worker_pid)
log = logging.getLogger("ecomrec.serve")


class IndexFailure(RuntimeError):
    """The search index could not answer (e.g. faiss padded its result with -1 ids): a server error."""


def clean_query(q: str) -> str:
    """The query with surrounding blanks removed; ValueError for empty, over-long or control-character text."""
    if not isinstance(q, str):
        raise ValueError("the query must be text")
    q = q.strip()
    if not q:
        raise ValueError("the query is empty")
    if len(q) > MAX_QUERY_CHARS:
        raise ValueError(f"the query is longer than {MAX_QUERY_CHARS} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co") for ch in q):
        raise ValueError("the query holds control characters")
    if not any(ch.isalnum() for ch in q):
        raise ValueError("the query holds no letter or digit")
    return q


@dataclass
class Service:
    """What the API serves; `from_artifacts` builds it from a profile's artifacts."""

    product_ids: np.ndarray
    product_titles: np.ndarray
    encoder: Any  # .encode(list[str]) → L2-normalised float32 rows
    index: Any  # .search(embeddings, k) → (ids, scores), e.g. HNSWIndex or DenseIndex
    recommender: Any  # a fitted ecomrec.recommend.models.Recommender
    item_ids: np.ndarray
    item_titles: np.ndarray
    item_embeddings: np.ndarray  # L2-normalised rows aligned with item_ids
    info: dict = field(default_factory=dict)
    bm25: Any = None  # .search_matched(queries, k) → (ids, scores), an ecomrec.models.search.BM25Index
    pipeline: Any = None  # an ecomrec.models.pipeline.SearchPipeline: the fusion weight of hybrid search

    def __post_init__(self):
        if (self.bm25 is None) != (self.pipeline is None):
            raise ValueError("hybrid search needs both a BM25 index and a search pipeline (or neither)")
        self._title = dict(zip(self.product_ids.tolist(), self.product_titles.tolist()))
        self._item_row = pd.Series(np.arange(len(self.item_ids)), index=self.item_ids)
        if len(self.item_embeddings) != len(self.item_ids):
            raise ValueError(f"{len(self.item_embeddings)} item embeddings for {len(self.item_ids)} items")

    @property
    def modes(self) -> tuple[str, ...]:
        """The search modes this service answers, its default first."""
        return ("hybrid", "dense") if self.pipeline is not None else ("dense",)

    def search(self, q: str, k: int = 10, mode: str | None = None) -> list[dict]:
        """The top `k` products for `q`; `mode` "hybrid" or "dense" (None: the service's default, `modes[0]`)."""
        from ecomrec.models.pipeline import fuse_lists

        query = clean_query(q)
        mode = self.modes[0] if mode is None else mode
        if mode not in self.modes:
            raise ValueError(f"search mode {mode!r} is not served here; modes: {', '.join(self.modes)}")
        depth = max(k, min(FUSION_DEPTH, len(self.product_ids))) if mode == "hybrid" else k
        try:
            found, scores = self.index.search(self.encoder.encode([query]), k=depth)
        except RuntimeError as error:  # HNSWIndex: the graph walk found fewer than k products
            raise IndexFailure(str(error)) from error
        found, scores = found[0], scores[0]
        if (found == -1).any() or len(found) < min(depth, len(self.product_ids)):
            raise IndexFailure(f"the index returned {int((found != -1).sum())} of {depth} results")
        if mode == "hybrid":
            lexical, lexical_scores = self.bm25.search_matched([query], k=depth)
            found, scores = fuse_lists(lexical[0], lexical_scores[0], found, scores, self.pipeline.dense_weight)
        return [{"product_id": _plain(p), "title": self._title[p], "score": float(s)}
                for p, s in zip(found[:k].tolist(), scores[:k].tolist())]

    def recommend(self, user_id: str, k: int = 10) -> list[dict]:
        items, scores = self.recommender.recommend_one(user_id, k=k)  # KeyError for an unknown user_id
        return [{"item_id": _plain(i), "title": self.item_titles[self._item_row[i]], "score": float(s)}
                for i, s in zip(items.tolist(), scores.tolist())]

    def similar(self, item_id: str, k: int = 10) -> list[dict]:
        if item_id not in self._item_row.index:
            raise KeyError(f"unknown item_id {item_id!r}")
        row = int(self._item_row[item_id])
        scores = self.item_embeddings @ self.item_embeddings[row]
        scores[row] = -np.inf  # never the item itself
        top = np.argsort(-scores, kind="stable")[:min(k, len(scores) - 1)]
        return [{"item_id": _plain(self.item_ids[j]), "title": self.item_titles[j], "score": float(scores[j])}
                for j in top]

    @classmethod
    def from_artifacts(cls, artifact_dir: str | Path = "artifacts", profile: str = "full",
                       encoder: str = "onnx-int8") -> "Service":
        """Load the selected bi-encoder (04) as `encoder` (07 writes the ONNX files and the HNSW index), BM25 over
        the Home Depot catalogue and 04's search pipeline, ItemKNN on every Office interaction and 02's item
        embeddings."""
        from ecomrec.data.prepare import load_prepared
        from ecomrec.models.pipeline import SearchPipeline
        from ecomrec.models.search import BM25Index
        from ecomrec.recommend.models import ItemKNN
        from ecomrec.serve.index import HNSWIndex

        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        start = time.perf_counter()
        root = C.artifact_dir(artifact_dir, profile)
        deploy, finetune = root / "deploy", root / "finetune"
        frames = load_prepared(artifact_dir, profile)
        products = frames["homedepot/products"]
        needed = {"torch": finetune / "biencoder_best", "onnx": deploy / "query_encoder" / "model.onnx",
                  "onnx-int8": deploy / "query_encoder_int8" / "model.onnx"}[encoder]
        for path, step in ((needed, "04_finetuning" if encoder == "torch" else "07_deployment"),
                           (finetune / "search_pipeline.json", "04_finetuning"),
                           (deploy / "catalogue.hnsw", "07_deployment"),
                           (root / "augment" / "minilm_office_items.npy", "02_augmentation")):
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing: run {step} for profile {profile!r} (make report)")
        if encoder == "torch":
            from ecomrec.models.encoders import sentence_encoder

            query_encoder = sentence_encoder(needed)
        else:
            from ecomrec.serve.export import OnnxSentenceEncoder

            # one thread per call: concurrent requests, not one request's layers, share the cores
            query_encoder = OnnxSentenceEncoder(needed, threads=1)
        index = HNSWIndex.load(deploy / "catalogue.hnsw", products[C.COL_PRODUCT_ID].to_numpy())
        items = frames["office/items"].reset_index(drop=True)
        recommender = ItemKNN(items[C.COL_ITEM].to_numpy()).fit(frames["office/interactions"])
        service = cls(product_ids=index.ids, product_titles=products[C.COL_TITLE].to_numpy(), encoder=query_encoder,
                      index=index, recommender=recommender, item_ids=items[C.COL_ITEM].to_numpy(),
                      item_titles=items[C.COL_TITLE].to_numpy(),
                      item_embeddings=np.load(root / "augment" / "minilm_office_items.npy"),
                      bm25=BM25Index(products[C.COL_PRODUCT_ID].to_numpy(), products[C.COL_TITLE].tolist()),
                      pipeline=SearchPipeline.load(finetune / "search_pipeline.json"),
                      info={"profile": profile, "encoder": encoder})
        service.info["search"] = f"hybrid (dense weight {service.pipeline.dense_weight:g}) or dense"
        service.info["load_seconds"] = round(time.perf_counter() - start, 2)
        return service


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def create_app(service: Service, keepalive_requests: int = KEEPALIVE_REQUESTS, health_details: bool | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, timeout_s: float = REQUEST_TIMEOUT_S):
    """The FastAPI application over a loaded `Service`; it closes a connection after `keepalive_requests`
    requests (`CloseAfterRequests`), bounds bodies and time (`GuardRequests`), and says what is loaded on
    /health only with `health_details` (default: $ECOMREC_HEALTH_DETAILS=1)."""
    if health_details is None:
        health_details = os.environ.get(HEALTH_DETAILS_ENV, "0") == "1"
    from fastapi import FastAPI, HTTPException, Query
    from pydantic import BaseModel, Field, StrictStr

    app = FastAPI(title="ecomrec", description=__doc__.split("\n\n")[0])
    app.add_middleware(GuardRequests, max_body_bytes=max_body_bytes, timeout_s=timeout_s)
    app.add_middleware(CloseAfterRequests, requests=keepalive_requests)  # outermost: also closes after a 413
    K = Annotated[int, Query(ge=1, le=MAX_K)]
    Id = Annotated[str, Query(min_length=1, max_length=MAX_ID_CHARS)]

    Mode = Literal["hybrid", "dense"]

    class SearchRequest(BaseModel):
        q: StrictStr = Field(min_length=1, max_length=MAX_QUERY_CHARS)
        k: int = Field(default=10, ge=1, le=MAX_K)
        mode: Mode | None = None

    def run_search(q: str, k: int, mode: str | None) -> dict:
        try:
            return {"query": q, "mode": mode or service.modes[0], "results": service.search(q, k, mode)}
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        except IndexFailure as error:
            log.error("search %r (k=%d): %s", q[:80], k, error)
            raise HTTPException(status_code=503, detail="the search index could not answer this query") from None

    @app.get("/health")
    async def health() -> dict:
        if not health_details:
            return {"status": "ok"}
        return {"status": "ok", "products": len(service.product_ids), "items": len(service.item_ids),
                "users": len(service.recommender.user_index), **service.info}

    @app.get("/search")
    async def search(q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)], k: K = 10, mode: Mode | None = None) -> dict:
        return run_search(q, k, mode)

    @app.post("/search")
    async def search_post(request: SearchRequest) -> dict:
        return run_search(request.q, request.k, request.mode)

    @app.get("/recommend")
    async def recommend(user_id: Id, k: K = 10) -> dict:
        try:
            return {"user_id": user_id, "results": service.recommend(user_id, k)}
        except KeyError as error:
            raise HTTPException(status_code=404, detail=error.args[0]) from None

    @app.get("/similar")
    async def similar(item_id: Id, k: K = 10) -> dict:
        try:
            return {"item_id": item_id, "results": service.similar(item_id, k)}
        except KeyError as error:
            raise HTTPException(status_code=404, detail=error.args[0]) from None

    return app


class CloseAfterRequests:
    """ASGI middleware: the `requests`-th response on one connection carries `Connection: close`, so the
    client opens a new one, which any worker process may accept (see the module docstring: this keeps
    keep-alive connections from staying piled on one worker). A connection is told apart by its client
    address and port; counts of connections that went away early are dropped, oldest first, past
    `max_tracked`."""

    def __init__(self, app, requests: int = KEEPALIVE_REQUESTS, max_tracked: int = 4096):
        if requests < 1:
            raise ValueError(f"requests per connection must be positive, got {requests}")
        self.app, self.requests, self.max_tracked = app, requests, max_tracked
        self.counts: dict = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("client") is None:
            return await self.app(scope, receive, send)
        connection = tuple(scope["client"])
        served = self.counts.pop(connection, 0) + 1  # popped and put back: the dict stays oldest-first
        if served < self.requests:
            self.counts[connection] = served
            if len(self.counts) > self.max_tracked:
                del self.counts[next(iter(self.counts))]
            return await self.app(scope, receive, send)

        async def send_closing(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, receive, send_closing)


def one_thread_per_worker() -> list[dict]:
    """Limit the native thread pools of the loaded libraries (the BLAS under numpy, OpenMP under faiss,
    torch's intra-op pool) to one thread, and return what threadpoolctl found.

    The server already runs one worker process per core; a BLAS or OpenMP pool inside each worker only
    adds threads that spin between small calls (a 2,420 × 384 product in /similar is enough to wake
    OpenBLAS's pool) and burn the cores the other workers need. Measured with `make bench` on 2 cores
    (then one process answering on a thread pool): server CPU 5.0 → 3.2-3.5 ms per request. Call it after
    the libraries are loaded."""
    import torch
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(1)
    torch.set_num_threads(1)
    return threadpool_info()


def app_from_env():
    """App factory for uvicorn (`make serve`): $ECOMREC_ARTIFACT_DIR, $ECOMREC_PROFILE, $ECOMREC_ENCODER.
    Each worker process calls it (and loads the artifacts) once; its native libraries run one thread
    (`one_thread_per_worker`)."""
    service = Service.from_artifacts(os.environ.get("ECOMREC_ARTIFACT_DIR", "artifacts"),
                                     os.environ.get("ECOMREC_PROFILE", "full"),
                                     os.environ.get("ECOMREC_ENCODER", "onnx-int8"))
    service.info["thread_pools"] = sorted({f"{pool['internal_api']}={pool['num_threads']}"
                                           for pool in one_thread_per_worker()})
    service.info["worker_pid"] = os.getpid()  # which worker process answered (`make bench` waits for all)
    return create_app(service)


def usable_cores() -> int:
    """The CPU cores this process may run on: how many worker processes serve by default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def server_command(port: int, log_level: str = "info", workers: int | None = None) -> list[str]:
    """The uvicorn command line that serves `app_from_env` on 127.0.0.1:`port` with `SERVER_OPTIONS` and
    `workers` processes (default: one per core, `usable_cores()`) — what `make serve` (`python -m
    ecomrec.serve`) runs and what `make bench` starts and loads."""
    workers = usable_cores() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be a positive number, got {workers}")
    return [sys.executable, "-m", "uvicorn", "--factory", "ecomrec.serve.api:app_from_env", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", log_level, "--workers", str(workers), *SERVER_OPTIONS]
