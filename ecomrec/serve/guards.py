"""What keeps one bad client from hurting the others: a bounded request body and a deadline per request.

`GuardRequests` is plain ASGI middleware in front of the app:
- the body is read first, at most `max_body_bytes` of it (413 past that, whatever Content-Length said), so
  no endpoint ever sees an unbounded body;
- the whole request, body included, must finish within `timeout_s`: a client that sends its body too slowly
  gets 408, an answer not started in time 504;
- a query string whose percent-decoded bytes are not UTF-8 gets 400 (Starlette would otherwise replace them
  with U+FFFD and search for the replacement characters).

The deadline can only act where the request waits (reading the body, sending the answer, any `await`): a
worker computes an answer in place, without handing it to a thread (`ecomrec.serve.api`), so a computation
is never cut short. That is bounded instead by the inputs (a query ≤ 200 characters, k ≤ 100), which keep
every computation to milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import unquote_to_bytes

MAX_BODY_BYTES = 4096  # a search body is {"q": ≤ 200 characters, "k": n}: far below this
REQUEST_TIMEOUT_S = 10.0
log = logging.getLogger("ecomrec.serve")


async def send_json(send, status: int, detail: str, close: bool = True) -> None:
    """Answer `status` with {"detail": ...} (and `Connection: close`: what is left of the request is unread)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardRequests:
    """ASGI middleware: a request body of at most `max_body_bytes` (413), a deadline of `timeout_s` (408
    while the body is read, 504 if the answer has not started)."""

    def __init__(self, app, max_body_bytes: int = MAX_BODY_BYTES, timeout_s: float = REQUEST_TIMEOUT_S):
        if max_body_bytes < 1 or timeout_s <= 0:
            raise ValueError("the body limit and the timeout must be positive")
        self.app, self.max_body_bytes, self.timeout_s = app, max_body_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            unquote_to_bytes(scope.get("query_string", b"").replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return await send_json(send, 400, "the request is not valid UTF-8", close=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            return await send_json(send, 413, f"the request body is larger than {self.max_body_bytes} bytes")
        try:
            async with asyncio.timeout_at(deadline):
                body, more, disconnected = b"", True, False
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        disconnected, more = True, False
                        break
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > self.max_body_bytes:
                        return await send_json(send, 413, f"the request body is larger than {self.max_body_bytes} bytes")
        except TimeoutError:
            return await send_json(send, 408, f"the request body did not arrive within {self.timeout_s:g} s")
        if disconnected:
            return None

        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the body was handed over once; what follows is the real stream (a disconnect)
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout_at(deadline):
                return await self.app(scope, replay, tracking_send)
        except TimeoutError:
            log.warning("%s %s: no answer within %g s", scope.get("method"), scope.get("path"), self.timeout_s)
            if not started:
                return await send_json(send, 504, f"no answer within {self.timeout_s:g} s")
            return None
