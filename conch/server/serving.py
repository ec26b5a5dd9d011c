"""What every endpoint family shares: prompt checks, submitting to an engine, waiting, streaming as SSE.

A request for `n` choices is n requests to the engine, each its own sequence in the batch (they share the
prompt's KV through the prefix cache); with a seed, choice i draws from seed + i. Their streams are merged into
one, each chunk naming its choice's `index`; usage counts the prompt once and every choice's tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Protocol

from fastapi.responses import JSONResponse, StreamingResponse

from conch.engine import Completion, EngineClient, EngineGone, Handle, QueueFull, SamplingParams
from conch.model.modeling import render
from conch.server.http_errors import ApiError
from conch.server.logprob_format import TokenTexts
from conch.server.models import ModelRegistry
from conch.server.protocol import error_body, usage

# Tokenizing a prompt longer than this goes to a worker thread rather than holding up the event loop.
INLINE_TOKENIZE_CHARS = 8192
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Serving:
    def __init__(self, models: ModelRegistry):
        self.models = models
        self.settings = models.settings
        self._token_texts: dict[str, TokenTexts] = {}

    def token_texts(self, engine: EngineClient) -> TokenTexts:
        """The model's token texts for logprobs (built at the first request that asks: ~1 s for 50k tokens)."""
        if engine.name not in self._token_texts:
            self._token_texts[engine.name] = TokenTexts(engine.tokenizer)
        return self._token_texts[engine.name]

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

    @classmethod
    def submit_choices(cls, engine: EngineClient, ids: list[int], body, max_tokens: int) -> list[Handle]:
        """One engine request per choice (`body.n`), all or none."""
        if body.n > engine.max_batch_size + engine.max_queue:
            raise ApiError(
                400,
                f"`n` is {body.n}, but model {engine.name!r} takes at most "
                f"{engine.max_batch_size + engine.max_queue} requests at a time (batch slots and queue)",
                param="n",
            )
        handles: list[Handle] = []
        try:
            for choice in range(body.n):
                handles.append(cls.submit(engine, ids, body.sampling(choice), max_tokens, body.stream))
        except ApiError:
            for handle in handles:
                handle.cancel()
            raise
        return handles

    @staticmethod
    async def wait(http_request, handles: list[Handle]) -> list[Completion]:
        """The finished requests; if the client hangs up first, their slots are freed at once."""
        watcher = asyncio.create_task(cancel_on_disconnect(http_request, handles))
        try:
            results = [await handle.result() for handle in handles]
        finally:
            watcher.cancel()
            for handle in handles:
                handle.cancel()
        return results


async def cancel_on_disconnect(http_request, handles: list[Handle]) -> None:
    while True:
        message = await http_request.receive()
        if message["type"] == "http.disconnect":
            for handle in handles:
                handle.cancel()
            return


def check_finished(results: list[Completion]) -> list[Completion]:
    """The results of a request answered in one piece; an error if one of them did not finish."""
    for result in results:
        if result.finish_reason == "error":
            raise ApiError(500, f"generation failed: {result.error}", "server_error")
        if result.finish_reason == "cancelled":  # the client is gone; nobody reads this
            raise ApiError(499, "request cancelled", "server_error")
    return results


def total_usage(results: list[Completion]) -> dict:
    """The prompt once (every choice answers the same one), and every choice's generated tokens."""
    return usage(results[0].prompt_tokens, sum(r.completion_tokens for r in results))


def json_response(body: dict) -> JSONResponse:
    # A ready JSONResponse skips FastAPI's generic encoder: these bodies are plain JSON already.
    return JSONResponse(body)


class StreamShape(Protocol):
    """The chunks an endpoint family streams around the generated text, for choice `index`. `logprobs`: the
    entries of the tokens behind the text (None when the request did not ask for them)."""

    def opening(self, index: int) -> list[dict]: ...  # before any text
    def piece(self, index: int, text: str, logprobs: list | None) -> list[dict]: ...  # maybe none yet
    def closing(self, index: int, result: Completion, logprobs: list | None) -> list[dict]: ...  # the end
    def usage(self, use: dict) -> dict: ...  # the usage chunk, with stream_options.include_usage


def sse(body: dict | str) -> str:
    return f"data: {body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}\n\n"


async def _merged(handles: list[Handle]):
    """(choice index, piece or Completion) from every handle, as they come."""
    if len(handles) == 1:  # the common case: no hop through another queue
        async for piece in handles[0].pieces():
            yield 0, piece
        yield 0, handles[0].finished
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, handle: Handle) -> None:
        async for piece in handle.pieces():
            queue.put_nowait((index, piece))
        queue.put_nowait((index, handle.finished))

    tasks = [asyncio.create_task(pump(i, handle)) for i, handle in enumerate(handles)]
    try:
        for _ in handles:
            while not isinstance((item := await queue.get())[1], Completion):
                yield item
            yield item
    finally:
        for task in tasks:
            task.cancel()


def stream_response(handles: list[Handle], shape: StreamShape, include_usage: bool) -> StreamingResponse:
    """Server-Sent Events: the shape's chunks around a chunk per piece of text, then [DONE]."""

    async def events():
        try:
            for index in range(len(handles)):
                for chunk in shape.opening(index):
                    yield sse(chunk)
            streamed, results = [0] * len(handles), []
            async with contextlib.aclosing(_merged(handles)) as merged:
                async for index, item in merged:
                    if isinstance(item, Completion):
                        if item.finish_reason in ("error", "cancelled"):
                            message = f"generation failed: {item.error or item.finish_reason}"
                            yield sse(error_body(message, "server_error", code=500))
                            break
                        rest = None if item.logprobs is None else item.logprobs[streamed[index] :]
                        results.append(item)
                        for chunk in shape.closing(index, item, rest):
                            yield sse(chunk)
                        continue
                    text, logprobs = item if isinstance(item, tuple) else (item, None)
                    streamed[index] += len(logprobs or ())
                    for chunk in shape.piece(index, text, logprobs):
                        yield sse(chunk)
                else:
                    if include_usage:
                        yield sse(shape.usage(total_usage(results)))
            yield sse("[DONE]")
        finally:
            # Runs when the client hangs up too (Starlette cancels the stream): the slots are freed at once.
            for handle in handles:
                handle.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
