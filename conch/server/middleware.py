"""The gate every HTTP request passes: API key, body size limit, and request metrics.

Pure ASGI (not BaseHTTPMiddleware), so streamed responses pass through untouched and a latency sample covers
the whole stream, up to its last byte.
"""

from __future__ import annotations

import hmac
import json
import time

from starlette.exceptions import HTTPException

from conch.server.prometheus import Metrics
from conch.server.protocol import error_body

# Paths that answer without an API key: the readiness probe, and the chat page (static HTML that asks the
# user for the key and sends it with every API call it makes).
PUBLIC_PATHS = frozenset({"/health", "/"})


class Gate:
    def __init__(
        self, app, metrics: Metrics, routes: frozenset[str], api_key: str | None, max_body_bytes: int
    ):
        self.app, self.metrics, self.routes = app, metrics, routes
        self._key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    def _authorized(self, scope) -> bool:
        if self._key is None or scope["path"] in PUBLIC_PATHS:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, recorded = time.perf_counter(), [500], [False]
        # Unknown paths share one label, so a scanner cannot blow up the number of series.
        label = scope["path"] if scope["path"] in self.routes else "other"

        def record() -> None:
            if not recorded[0]:
                recorded[0] = True
                self.metrics.observe_request(label, status[0], time.perf_counter() - started)

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                record()

        if not self._authorized(scope):
            return await _reply(
                send_and_record,
                401,
                error_body(
                    "missing or wrong API key: send the header `Authorization: Bearer <key>` (the key the server "
                    "was started with)",
                    "authentication_error",
                    code=401,
                ),
                [(b"www-authenticate", b"Bearer")],
            )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await _reply(send_and_record, 413, _too_large(self.max_body_bytes))
        seen = [0]

        async def receive_limited():
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body_bytes:  # chunked bodies carry no Content-Length
                    raise HTTPException(413, _too_large(self.max_body_bytes)["error"]["message"])
            return message

        try:
            await self.app(scope, receive_limited, send_and_record)
        finally:
            record()  # also a stream its client hung up on, with the status it had started with


def _too_large(limit: int) -> dict:
    return error_body(
        f"request body is larger than the server's limit of {limit} bytes", "invalid_request_error", code=413
    )


async def _reply(send, status: int, body: dict, headers: list | None = None) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
