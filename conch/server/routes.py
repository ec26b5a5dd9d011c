"""The HTTP endpoints, each handing its work to the serving module of its family (chat, completions, RAG)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from conch.server import protocol as p
from conch.server.models import ModelRegistry
from conch.server.page import chat_page
from conch.server.prometheus import CONTENT_TYPE, Metrics
from conch.server.route_table import RAG_ROUTE_TABLE, ROUTE_TABLE, Route
from conch.server.serving_chat import ChatServing
from conch.server.serving_completions import CompletionServing


def _mount(table: tuple[Route, ...], handlers: dict[str, Callable], **router_args) -> APIRouter:
    """A router with each route of `table` answered by the handler of its path; a handler the table lacks,
    or a route without a handler, is a programming error caught at start-up."""
    if set(handlers) != {r.path for r in table}:
        raise RuntimeError(f"routes and handlers differ: {set(handlers) ^ {r.path for r in table}}")
    router = APIRouter(**router_args)
    for r in table:
        router.add_api_route(r.path, handlers[r.path], methods=[r.method], include_in_schema=r.api)
    return router


def build_router(
    models: ModelRegistry, metrics: Metrics, chat: ChatServing, completions: CompletionServing
) -> APIRouter:
    async def page():
        return HTMLResponse(chat_page())

    async def health():
        status, body, headers = models.health()
        return JSONResponse(body, status_code=status, headers=headers)

    async def metrics_text():
        stats = {name: await engine.stats() for name, engine in models.engines.items()}
        return Response(metrics.render(models.engines, stats), media_type=CONTENT_TYPE)

    async def list_models():
        models.engine(None)  # 503 while loading
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "conch"}
                for name in models.engines
            ],
        }

    async def generate(
        request: Request,
        prompt: Annotated[str, Query(min_length=1)],
        max_new_tokens: Annotated[int | None, Query(ge=1)] = None,
        model: Annotated[str | None, Query()] = None,
    ):
        """The walkthrough's endpoint: a greedy answer to one user message."""
        return await chat.generate(request, prompt, max_new_tokens, model)

    async def chat_completions(body: p.ChatCompletionRequest, request: Request):
        return await chat.create(body, request)

    async def text_completions(body: p.CompletionRequest, request: Request):
        return await completions.create(body, request)

    return _mount(
        ROUTE_TABLE,
        {
            "/": page,
            "/health": health,
            "/metrics": metrics_text,
            "/v1/models": list_models,
            "/generate": generate,
            "/v1/chat/completions": chat_completions,
            "/v1/completions": text_completions,
        },
    )


def build_rag_router(rag) -> APIRouter:
    """The knowledge-base endpoints (`rag`: a conch.server.serving_rag.RagServing)."""

    async def rag_query(body: p.RagQueryRequest):
        return await rag.query(body)

    async def rag_chat_completions(body: p.RagChatCompletionRequest, request: Request):
        return await rag.create(body, request)

    return _mount(
        RAG_ROUTE_TABLE,
        {"/v1/rag/query": rag_query, "/v1/rag/chat/completions": rag_chat_completions},
        tags=["rag"],
    )
