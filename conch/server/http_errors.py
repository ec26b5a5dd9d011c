"""Every error as OpenAI shapes it, `{"error": {"message", "type", "param", "code"}}`, with a message that says
what to fix: raised `ApiError`s, request validation (422 naming the field), unknown paths and methods."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from conch.server.protocol import error_body


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


def _json_error(status: int, message: str, kind: str, param: str | None = None, headers: dict | None = None):
    return JSONResponse(error_body(message, kind, param, status), status_code=status, headers=headers)


_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|dict|list|[a-z]+-[a-z-]+|[a-z-]+\[.*\])$")


def describe_validation(errors: list[dict]) -> tuple[str, str | None]:
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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request, exc: ApiError):
        return _json_error(exc.status, exc.message, exc.kind, exc.param, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc: RequestValidationError):
        message, param = describe_validation(exc.errors())
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
