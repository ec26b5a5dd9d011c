"""`create_app`: the conch FastAPI app, its models loading in the background while /health says so."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conch.server.middleware import Gate
from conch.server.protocol import error_body
from conch.server.routes import ROUTES, build_router
from conch.server.service import ApiError, ServerState
from conch.server.settings import ServeSettings, single_model

log = logging.getLogger("conch.server")


def create_app(
    model_path: str | None = None,
    name: str = "conch",
    max_new_tokens: int = 128,
    *,
    adapter: str | None = None,
    settings: ServeSettings | None = None,
    api_key: str | None = None,
    rag_index: str | None = None,
    on_load_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Serve `model_path` (with `adapter` applied unmerged, if given) as `name`, or every model in `settings`.

    `api_key`, when set, is required as `Authorization: Bearer <key>` on every endpoint but /health and the
    page. `rag_index` adds the RAG router (conch.rag.api) bound to the default model.
    """
    if settings is None:
        if model_path is None:
            raise ValueError("create_app needs model_path or settings")
        settings = single_model(model_path, name, adapter, max_new_tokens=max_new_tokens)
    state = ServerState(settings)

    def load() -> None:
        try:
            state.load_models()
        except Exception:
            if on_load_failure:
                on_load_failure()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="conch-loader", daemon=True).start()
        yield
        state.close()

    app = FastAPI(title="conch", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.conch = state
    app.include_router(build_router(state))
    routes = ROUTES
    if rag_index:
        try:
            from conch.rag.api import build_router as build_rag_router
        except ImportError as exc:
            raise RuntimeError(
                f"--rag-index needs conch.rag.api, which could not be imported: {exc}"
            ) from exc
        rag_router = build_rag_router(rag_index, state.complete)
        app.include_router(rag_router)
        routes = routes | {getattr(r, "path", "") for r in rag_router.routes}
    app.add_middleware(
        Gate,
        metrics=state.metrics,
        routes=frozenset(routes),
        api_key=api_key,
        max_body_bytes=settings.max_body_bytes,
    )
    _install_error_handlers(app)
    return app


def _json_error(status: int, message: str, kind: str, param: str | None = None, headers: dict | None = None):
    return JSONResponse(error_body(message, kind, param, status), status_code=status, headers=headers)


_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|dict|list|[a-z]+-[a-z-]+|[a-z-]+\[.*\])$")


def _describe_validation(errors: list[dict]) -> tuple[str, str | None]:
    """A sentence per problem, each naming the field, e.g. `max_tokens: Input should be a valid integer`."""
    parts, first_param = [], None
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query")]
        if e.get("type") == "json_invalid":
            parts.append(f"the request body is not valid JSON ({e.get('ctx', {}).get('error', e['msg'])})")
            continue
        # Pydantic names a union's branch ("str", "list[constrained-str]") in the location; people name the field.
        field = ".".join(x for x in loc if not _UNION_BRANCH.match(x))
        first_param = first_param or field or None
        message = e["msg"].removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            message = "unknown field (not part of the API conch implements)"
        elif e.get("type") == "missing":
            message = "field required"
        parts.append(f"{field or 'body'}: {message}")
    return "; ".join(dict.fromkeys(parts)), first_param


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _json_error(exc.status, exc.message, exc.kind, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        message, param = _describe_validation(exc.errors())
        return _json_error(422, message, "invalid_request_error", param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _json_error(
            exc.status_code, message, "invalid_request_error", headers=getattr(exc, "headers", None)
        )
