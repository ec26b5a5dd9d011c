"""Between HTTP and the engines: model lookup, prompt checks, submitting, waiting, disconnect handling."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from conch.modeling import render
from conch.server.metrics import Metrics
from conch.server.remote import EngineSpec, ProcessEngine
from conch.server.request import Completion, EngineGone, Handle, QueueFull
from conch.server.sampling import SamplingParams
from conch.server.settings import ServeSettings

log = logging.getLogger("conch.server")

# Tokenizing a prompt longer than this goes to a worker thread rather than holding up the event loop.
INLINE_TOKENIZE_CHARS = 8192


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        param: str | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.headers = status, message, kind, param, headers


@dataclass
class ServerState:
    settings: ServeSettings
    metrics: Metrics = field(default_factory=Metrics)
    engines: dict[str, ProcessEngine] = field(default_factory=dict)
    ready: bool = False
    load_error: str | None = None

    def load_models(self) -> None:
        """Load every configured model and start its engine (run in a thread: /health answers meanwhile)."""
        try:
            s = self.settings
            for entry in s.models:
                log.info(
                    "loading model %r from %s%s",
                    entry.name,
                    entry.path,
                    f" with adapter {entry.adapter}" if entry.adapter else "",
                )
                spec = EngineSpec(
                    entry.name,
                    entry.path,
                    entry.adapter,
                    s.max_batch_size,
                    s.max_queue,
                    s.max_prefill_tokens,
                    s.context_length,
                    s.prefix_cache,
                    s.threads,
                )
                self.engines[entry.name] = ProcessEngine(spec)
            self.ready = True
            log.info("ready: %s", ", ".join(self.engines))
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading models failed")
            raise

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def engine(self, name: str | None) -> ProcessEngine:
        if not self.ready:
            raise ApiError(
                503,
                "the server is still loading its models; retry shortly",
                "server_error",
                headers={"Retry-After": "5"},
            )
        name = name or self.settings.default_model
        if name not in self.engines:
            raise ApiError(
                404,
                f"model {name!r} not found; available: {', '.join(self.engines)}",
                "not_found_error",
                param="model",
            )
        engine = self.engines[name]
        if not engine.alive:
            raise ApiError(503, f"model {name!r} is not available: {engine.error}", "server_error")
        return engine

    async def prepare(
        self, engine: ProcessEngine, prompt: str, requested: int | None, param: str
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

    async def render_chat(self, engine: ProcessEngine, messages: list[dict]) -> str:
        try:
            if len(messages) > 16 or sum(len(m["content"]) for m in messages) > INLINE_TOKENIZE_CHARS:
                return await asyncio.to_thread(render, engine.tokenizer, messages)  # long: off the event loop
            return render(engine.tokenizer, messages)
        except Exception as exc:  # the chat template itself may reject e.g. an unsupported role order
            raise ApiError(
                400, f"the model's chat template rejected these messages: {exc}", param="messages"
            ) from exc

    def submit(
        self, engine: ProcessEngine, ids: list[int], params: SamplingParams, max_tokens: int, stream: bool
    ) -> Handle:
        try:
            return engine.submit(ids, params, max_tokens, stream)
        except QueueFull as exc:
            raise ApiError(
                503, f"{exc}; retry shortly", "server_error", headers={"Retry-After": "1"}
            ) from exc
        except EngineGone as exc:
            raise ApiError(503, f"model {engine.name!r} is not available: {exc}", "server_error") from exc

    async def wait(self, http_request, req: Handle) -> Completion:
        """The finished request; if the client hangs up first, its slot is freed at once."""
        watcher = asyncio.create_task(cancel_on_disconnect(http_request, req))
        try:
            result = await req.result()
        finally:
            watcher.cancel()
            req.cancel()
        return result

    async def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        """The default model's answer to a conversation (the hook RAG builds on)."""
        engine = self.engine(None)
        ids, budget = await self.prepare(
            engine, await self.render_chat(engine, messages), max_tokens, "messages"
        )
        req = self.submit(engine, ids, SamplingParams(temperature=temperature), budget, stream=False)
        try:
            result = await req.result()
        finally:
            req.cancel()
        if result.finish_reason == "error":
            raise RuntimeError(f"generation failed: {result.error}")
        return result.text


async def cancel_on_disconnect(http_request, req: Handle) -> None:
    while True:
        message = await http_request.receive()
        if message["type"] == "http.disconnect":
            req.cancel()
            return
