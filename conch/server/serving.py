"""What every endpoint family shares: prompt checks, submitting to an engine, waiting, streaming as SSE."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

from fastapi.responses import JSONResponse, StreamingResponse

from conch.engine.client import EngineClient, Handle
from conch.engine.request import Completion, EngineGone, QueueFull
from conch.engine.sampling import SamplingParams
from conch.modeling import render
from conch.server.errors import ApiError
from conch.server.models import ModelRegistry
from conch.server.protocol import error_body, usage

# Tokenizing a prompt longer than this goes to a worker thread rather than holding up the event loop.
INLINE_TOKENIZE_CHARS = 8192
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Serving:
    def __init__(self, models: ModelRegistry):
        self.models = models
        self.settings = models.settings

    async def tokenize(
        self, engine: EngineClient, prompt: str, requested: int | None, param: str
    ) -> tuple[list[int], int]:
        """Token ids of a rendered prompt and the answer's token budget; a 400 if the prompt leaves no room."""
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:  # JSON may escape a lone surrogate; the tokenizer cannot take it
            raise ApiError(
                400,
                f"`{param}` is not valid Unicode: it holds \\u{ord(prompt[exc.start]):04x}, "
                "half of a UTF-16 surrogate pair without the other half",
                param=param,
            ) from None
        if len(prompt) > INLINE_TOKENIZE_CHARS:
            ids = await asyncio.to_thread(engine.encode, prompt)
        else:
            ids = engine.encode(prompt)
        return self.check_prompt(engine, ids, requested, param)

    def check_prompt(
        self, engine: EngineClient, ids: list[int], requested: int | None, param: str
    ) -> tuple[list[int], int]:
        """The prompt's ids and the answer's token budget; a 400 if the prompt leaves no room."""
        if not ids:
            raise ApiError(400, f"`{param}` is empty", param=param)
        if len(ids) >= engine.context_length:
            rendered = " once rendered with the chat template" if param == "messages" else ""
            raise ApiError(
                400,
                f"`{param}` is {len(ids)} tokens{rendered}, but model {engine.name!r} has a context of "
                f"{engine.context_length} tokens, which must also hold the answer; shorten it",
                param=param,
            )
        return ids, min(requested or self.settings.max_new_tokens, self.settings.max_new_tokens)

    async def render_chat(self, engine: EngineClient, messages: list[dict]) -> str:
        try:
            if len(messages) > 16 or sum(len(m["content"]) for m in messages) > INLINE_TOKENIZE_CHARS:
                return await asyncio.to_thread(render, engine.tokenizer, messages)  # long: off the event loop
            return render(engine.tokenizer, messages)
        except Exception as exc:  # the chat template itself may reject e.g. an unsupported role order
            raise ApiError(
                400, f"the model's chat template rejected these messages: {exc}", param="messages"
            ) from exc

    @staticmethod
    def submit(
        engine: EngineClient, ids: list[int], params: SamplingParams, max_tokens: int, stream: bool
    ) -> Handle:
        try:
            return engine.submit(ids, params, max_tokens, stream)
        except QueueFull as exc:
            raise ApiError(
                503, f"{exc}; retry shortly", "server_error", headers={"Retry-After": "1"}
            ) from exc
        except EngineGone as exc:
            raise ApiError(503, f"model {engine.name!r} is not available: {exc}", "server_error") from exc

    @staticmethod
    async def wait(http_request, handle: Handle) -> Completion:
        """The finished request; if the client hangs up first, its slot is freed at once."""
        watcher = asyncio.create_task(cancel_on_disconnect(http_request, handle))
        try:
            result = await handle.result()
        finally:
            watcher.cancel()
            handle.cancel()
        return result


async def cancel_on_disconnect(http_request, handle: Handle) -> None:
    while True:
        message = await http_request.receive()
        if message["type"] == "http.disconnect":
            handle.cancel()
            return


def check_finished(result: Completion) -> Completion:
    """The result of a request answered in one piece; an error if it did not finish."""
    if result.finish_reason == "error":
        raise ApiError(500, f"generation failed: {result.error}", "server_error")
    if result.finish_reason == "cancelled":  # the client is gone; nobody reads this
        raise ApiError(499, "request cancelled", "server_error")
    return result


def json_response(body: dict) -> JSONResponse:
    # A ready JSONResponse skips FastAPI's generic encoder: these bodies are plain JSON already.
    return JSONResponse(body)


class StreamShape(Protocol):
    """The chunks an endpoint family streams around the generated text."""

    def opening(self) -> list[dict]: ...  # before any text
    def piece(self, text: str) -> list[dict]: ...  # for a piece of text (maybe none, e.g. while parsing)
    def closing(self, result: Completion) -> list[dict]: ...  # after the last piece: finish_reason
    def usage(self, use: dict) -> dict: ...  # the usage chunk, with stream_options.include_usage


def sse(body: dict | str) -> str:
    return f"data: {body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}\n\n"


def stream_response(handle: Handle, shape: StreamShape, include_usage: bool) -> StreamingResponse:
    """Server-Sent Events: the shape's chunks around a chunk per piece of text, then [DONE]."""

    async def events():
        try:
            for chunk in shape.opening():
                yield sse(chunk)
            async for piece in handle.pieces():
                for chunk in shape.piece(piece):
                    yield sse(chunk)
            result = handle.finished
            if result.finish_reason in ("error", "cancelled"):
                yield sse(
                    error_body(
                        f"generation failed: {result.error or result.finish_reason}", "server_error", code=500
                    )
                )
            else:
                for chunk in shape.closing(result):
                    yield sse(chunk)
                if include_usage:
                    yield sse(shape.usage(usage(result.prompt_tokens, result.completion_tokens)))
            yield sse("[DONE]")
        finally:
            # Runs when the client hangs up too (Starlette cancels the stream): the slot is freed at once.
            handle.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
