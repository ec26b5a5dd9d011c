"""`create_app`: the conch FastAPI app, its models loading in the background while /health says so."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from fastapi import FastAPI

from conch.server.http_errors import install_error_handlers
from conch.server.middleware import Gate
from conch.server.models import ModelRegistry
from conch.server.prometheus import Metrics
from conch.server.route_table import RAG_ROUTES, ROUTES
from conch.server.routes import build_rag_router, build_router
from conch.server.serving_chat import ChatServing
from conch.server.serving_completions import CompletionServing
from conch.server.settings import ServeSettings


def create_app(
    settings: ServeSettings,
    *,
    api_key: str | None = None,
    rag_index: str | None = None,
    on_load_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Serve every model in `settings`.

    `api_key`, when set, is required as `Authorization: Bearer <key>` on every endpoint but /health and the
    page. `rag_index` adds the knowledge-base endpoints (conch.server.serving_rag) over that index.
    """
    metrics = Metrics()
    models = ModelRegistry(settings, metrics)
    chat, completions = ChatServing(models), CompletionServing(models)

    def load() -> None:
        try:
            models.load()
            chat.template_chat.warm(models.engines)
        except Exception:
            if on_load_failure:
                on_load_failure()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="conch-loader", daemon=True).start()
        yield
        models.close()

    app = FastAPI(title="conch", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(build_router(models, metrics, chat, completions))
    routes = ROUTES
    if rag_index:
        from conch.server.serving_rag import RagServing  # faiss and the embedding model: only when asked for

        app.include_router(build_rag_router(RagServing(models, rag_index)))
        routes = routes | RAG_ROUTES
    app.add_middleware(
        Gate,
        metrics=metrics,
        routes=frozenset(routes),
        api_key=api_key,
        max_body_bytes=settings.max_body_bytes,
    )
    install_error_handlers(app)
    return app
