"""The HTTP endpoints: walkthrough-compatible /generate, OpenAI /v1/*, /health, /metrics and the chat page."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from conch.server import protocol as p
from conch.server.page import chat_page
from conch.server.sampling import SamplingParams
from conch.server.service import ApiError, ServerState

ROUTES = frozenset(
    {"/", "/health", "/metrics", "/generate", "/v1/models", "/v1/chat/completions", "/v1/completions"}
)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(body: dict | str) -> str:
    return f"data: {body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}\n\n"


def build_router(state: ServerState) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(chat_page())

    @router.get("/health")
    async def health():
        if state.ready:
            if down := {name: e.error for name, e in state.engines.items() if not e.alive}:
                return JSONResponse({"status": "error", "error": down}, status_code=503)
            return {"status": "ok", "models": list(state.engines)}
        if state.load_error:
            return JSONResponse({"status": "error", "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503, headers={"Retry-After": "5"})

    @router.get("/metrics")
    async def metrics():
        stats = {name: await engine.stats() for name, engine in state.engines.items()}
        return PlainTextResponse(
            state.metrics.render(state.engines, stats), media_type="text/plain; version=0.0.4"
        )

    @router.get("/v1/models")
    async def models():
        state.engine(None)  # 503 while loading
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "conch"}
                for name in state.engines
            ],
        }

    @router.get("/generate")
    async def generate(
        request: Request,
        prompt: Annotated[str, Query(min_length=1)],
        max_new_tokens: Annotated[int | None, Query(ge=1)] = None,
        model: Annotated[str | None, Query()] = None,
    ):
        """The walkthrough's endpoint: a greedy answer to one user message."""
        engine = state.engine(model)
        text = await state.render_chat(engine, [{"role": "user", "content": prompt}])
        ids, budget = await state.prepare(engine, text, max_new_tokens, "prompt")
        result = await state.wait(request, state.submit(engine, ids, SamplingParams(), budget, stream=False))
        return _final(state, engine, result, lambda r: {"generated_text": r.text})

    @router.post("/v1/chat/completions")
    async def chat(body: p.ChatCompletionRequest, request: Request):
        engine = state.engine(body.model)
        text = await state.render_chat(engine, [{"role": m.role, "content": m.text()} for m in body.messages])
        ids, budget = await state.prepare(engine, text, body.requested_tokens(), "messages")
        req = state.submit(engine, ids, body.sampling(), budget, stream=body.stream)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            first = p.chat_chunk(rid, engine.name, {"role": "assistant", "content": ""})
            return _stream(
                state,
                engine,
                req,
                body.include_usage,
                first,
                lambda piece: p.chat_chunk(rid, engine.name, {"content": piece}),
                lambda reason: p.chat_chunk(rid, engine.name, {}, reason),
                lambda use: p.usage_chunk(rid, engine.name, "chat.completion.chunk", use),
            )
        result = await state.wait(request, req)
        return _final(
            state,
            engine,
            result,
            lambda r: p.chat_body(
                rid, engine.name, r.text, r.finish_reason, p.usage(r.prompt_tokens, r.completion_tokens)
            ),
        )

    @router.post("/v1/completions")
    async def completions(body: p.CompletionRequest, request: Request):
        engine = state.engine(body.model)
        ids, budget = await state.prepare(engine, body.prompt_text(), body.requested_tokens(), "prompt")
        req = state.submit(engine, ids, body.sampling(), budget, stream=body.stream)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if body.stream:
            return _stream(
                state,
                engine,
                req,
                body.include_usage,
                None,
                lambda piece: p.completion_body(rid, engine.name, piece, None, None, chunk=True),
                lambda reason: p.completion_body(rid, engine.name, "", reason, None, chunk=True),
                lambda use: p.usage_chunk(rid, engine.name, "text_completion", use),
            )
        result = await state.wait(request, req)
        return _final(
            state,
            engine,
            result,
            lambda r: p.completion_body(
                rid, engine.name, r.text, r.finish_reason, p.usage(r.prompt_tokens, r.completion_tokens)
            ),
        )

    return router


def _final(state: ServerState, engine, result, make_body):
    if result.finish_reason == "error":
        raise ApiError(500, f"generation failed: {result.error}", "server_error")
    if result.finish_reason == "cancelled":  # the client is gone; nobody reads this
        raise ApiError(499, "request cancelled", "server_error")
    # A ready JSONResponse skips FastAPI's generic encoder: these bodies are plain JSON already.
    return JSONResponse(make_body(result))


def _stream(state, engine, req, include_usage: bool, first, piece_chunk, final_chunk, usage_chunk):
    """Server-Sent Events: a chunk per piece of text, a closing chunk with finish_reason, then [DONE]."""

    async def events():
        try:
            if first is not None:
                yield _sse(first)
            async for piece in req.pieces():
                yield _sse(piece_chunk(piece))
            result = req.finished
            if result.finish_reason in ("error", "cancelled"):
                yield _sse(
                    p.error_body(
                        f"generation failed: {result.error or result.finish_reason}", "server_error", code=500
                    )
                )
            else:
                yield _sse(final_chunk(result.finish_reason))
                if include_usage:
                    yield _sse(usage_chunk(p.usage(result.prompt_tokens, result.completion_tokens)))
            yield _sse("[DONE]")
        finally:
            # Runs when the client hangs up too (Starlette cancels the stream): the slot is freed at once.
            req.cancel()

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)
