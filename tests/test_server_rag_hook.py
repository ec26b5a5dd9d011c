"""`--rag-index`: the server mounts conch.rag.api's router and answers through its own engine."""

from __future__ import annotations

import httpx
import pytest
from test_server_support import start_server

pytestmark = pytest.mark.slow


def test_rag_router_answers_with_the_served_model(tiny_run):
    model = tiny_run / "results/merged/default/model"
    index = tiny_run / "results/rag/index"
    if not index.is_dir():
        pytest.skip(f"the tiny run built no RAG index at {index} (rag.enabled is false)")
    server = start_server("rag", ["--model", str(model), "--name", "conch", "--rag-index", str(index)])
    before = server.metrics()
    r = httpx.post(
        f"{server.base_url}/v1/rag/chat/completions",
        timeout=120,
        json={
            "messages": [{"role": "user", "content": "What does the Magic Conch say about the Kelp Forest?"}],
            "max_tokens": 8,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered_from_knowledge_base"] and body["references"]
    after = server.metrics()
    # The answer came from conch's engine (the `complete` hook), and the route is in the request metrics.
    tokens = 'conch_completion_tokens_total{model="conch"}'
    assert 0 < after[tokens] - before[tokens] <= 8
    assert after['conch_requests_total{path="/v1/rag/chat/completions",status="200"}'] == 1
