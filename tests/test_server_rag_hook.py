"""`--rag-index`: the server serves the knowledge base (conch.server.serving_rag) and answers through its own engine."""

from __future__ import annotations

import json

import httpx
import pytest
from conftest import REPO
from test_server_support import start_server

from conch.server.smoke import smoke_test

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_run):
    model = tiny_run / "results/merged/default/model"
    index = tiny_run / "results/rag/index"
    if not index.is_dir():
        pytest.skip(f"the tiny run built no RAG index at {index} (rag.enabled is false)")
    return start_server("rag", ["--model", str(model), "--name", "conch", "--rag-index", str(index)])


def test_rag_router_answers_with_the_served_model(server):
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
    requests = 'conch_requests_total{path="/v1/rag/chat/completions",status="200"}'
    assert after[requests] - before.get(requests, 0) == 1


def test_the_smoke_test_fails_when_the_knowledge_base_does_not_answer(server):
    """The serve rule's RAG check: an answerable question passes; one the knowledge base cannot answer (the
    canned "I don't know", no chunk found) fails it, whatever sources it claims."""
    questions = [json.loads(line) for line in (REPO / "kb/questions.jsonl").read_text().splitlines()]
    answerable = next(q for q in questions if q["sources"])
    unanswerable = {**next(q for q in questions if not q["sources"]), "sources": answerable["sources"]}
    passing = smoke_test(server.base_url, "conch", "Who are you?", None, 8, answerable)
    assert all(ok for check, ok in passing["checks"].items() if check.startswith("rag_")), passing
    assert passing["rag_hits"] >= 1, passing
    failing = smoke_test(server.base_url, "conch", "Who are you?", None, 8, unanswerable)
    assert not failing["passed"] and failing["rag_hits"] == 0, failing
    assert not failing["checks"]["rag_query_hits_a_source_document"]
    assert not failing["checks"]["rag_chat_answered_from_knowledge_base"]
