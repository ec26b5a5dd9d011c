"""The HTTP endpoints, each handing its work to the serving module of its family (chat, completions, RAG)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from conch.server import protocol as p
from conch.server.metrics import CONTENT_TYPE, Metrics
from conch.server.models import ModelRegistry
from conch.server.page import chat_page
from conch.server.serving_chat import ChatServing
from conch.server.serving_completions import CompletionServing

ROUTES = frozenset(
    {"/", "/health", "/metrics", "/generate", "/v1/models", "/v1/chat/completions", "/v1/completions"}
)
RAG_ROUTES = frozenset({"/v1/rag/query", "/v1/rag/chat/completions"})


def build_router(
    models: ModelRegistry, metrics: Metrics, chat: ChatServing, completions: CompletionServing
) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page():
        return HTMLResponse(chat_page())

    @router.get("/health")
    async def health():
        status, body, headers = models.health()
        return JSONResponse(body, status_code=status, headers=headers)

    @router.get("/metrics")
    async def metrics_text():
        stats = {name: await engine.stats() for name, engine in models.engines.items()}
        return Response(metrics.render(models.engines, stats), media_type=CONTENT_TYPE)

    @router.get("/v1/models")
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

    @router.get("/generate")
    async def generate(
        request: Request,
        prompt: Annotated[str, Query(min_length=1)],
        max_new_tokens: Annotated[int | None, Query(ge=1)] = None,
        model: Annotated[str | None, Query()] = None,
    ):
        """The walkthrough's endpoint: a greedy answer to one user message."""
        return await chat.generate(request, prompt, max_new_tokens, model)

    @router.post("/v1/chat/completions")
    async def chat_completions(body: p.ChatCompletionRequest, request: Request):
        return await chat.create(body, request)

    @router.post("/v1/completions")
    async def text_completions(body: p.CompletionRequest, request: Request):
        return await completions.create(body, request)

    return router


def build_rag_router(rag) -> APIRouter:
    """The knowledge-base endpoints (`rag`: a conch.server.serving_rag.RagServing)."""
    router = APIRouter(tags=["rag"])

    @router.post("/v1/rag/query")
    async def rag_query(body: p.RagQueryRequest):
        return await rag.query(body)

    @router.post("/v1/rag/chat/completions")
    async def rag_chat_completions(body: p.RagChatCompletionRequest, request: Request):
        return await rag.create(body, request)

    return router
