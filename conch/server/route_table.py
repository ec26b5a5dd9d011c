"""What the server answers: one table of routes, which the routers mount (conch/server/routes.py) and the
deployment manifest lists (conch/server/deploy.py).

Apart from the routers so that the serve job, which never loads the model itself, reads it without importing
the engine (torch, transformers).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    description: str
    api: bool = True  # in the OpenAPI spec (the chat page is HTML, not API)


# The one list of what the server answers: the routers mount these, and the deployment manifest lists them.
ROUTE_TABLE = (
    Route("GET", "/", "the chat page", api=False),
    Route("GET", "/health", "200 once every model is loaded; 503 while loading or if loading failed"),
    Route("GET", "/metrics", "Prometheus text"),
    Route("GET", "/v1/models", "the configured model names"),
    Route("GET", "/generate", "a greedy answer to `prompt`, chat template applied"),
    Route("POST", "/v1/chat/completions", "OpenAI chat completions"),
    Route("POST", "/v1/completions", "OpenAI completions: a raw prompt"),
)
RAG_ROUTE_TABLE = (
    Route("POST", "/v1/rag/query", "ranked knowledge-base chunks"),
    Route("POST", "/v1/rag/chat/completions", "the chat, answered from the knowledge base with citations"),
)
ROUTES = frozenset(r.path for r in ROUTE_TABLE)
RAG_ROUTES = frozenset(r.path for r in RAG_ROUTE_TABLE)


def endpoints(rag: bool) -> list[str]:
    """`METHOD path` of every route a server with (or without) a RAG index answers."""
    return [f"{r.method} {r.path}" for r in (*ROUTE_TABLE, *(RAG_ROUTE_TABLE if rag else ()))]
