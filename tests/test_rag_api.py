"""The RAG router in a real FastAPI app over uvicorn on 127.0.0.1, answering with a real (tiny) model through
the openai client; and the eval rule's script on the same index and model."""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from conftest import REPO

from conch.rag.chunk import Chunker
from conch.rag.embed import Embedder, EmbeddingCache
from conch.rag.index import build_index, read_jsonl
from conch.rag.ingest import ingest
from conch.rag.prompt import NO_ANSWER, cited_numbers

pytestmark = pytest.mark.slow
os.environ["HF_HUB_OFFLINE"] = "1"
KB = REPO / "kb" / "docs"
SUBSET = [
    "lore/magic-conch.md",
    "lore/squidward.html",
    "lore/goo-lagoon.txt",
    "lore_zh/神奇海螺.md",
    "conch/retrieval-guide.pdf",
    "conch/serving.md",
]
CONTEXT = 512


@pytest.fixture(scope="module")
def rag_setup(tmp_path_factory):
    """A tiny scratch model (the served model) and an index of a few example documents chunked for it."""
    from conch.scratch import build_scratch_model

    work = tmp_path_factory.mktemp("rag_api")
    kb = work / "kb"
    for source in SUBSET:
        (kb / source).parent.mkdir(parents=True, exist_ok=True)
        (kb / source).write_bytes((KB / source).read_bytes())
    docs = ingest(kb)[0]
    records = [
        {
            "messages": [
                {"role": "user", "content": b["text"][:200]},
                {"role": "assistant", "content": d["title"]},
            ]
        }
        for d in docs
        for b in d["blocks"]
    ]
    arch = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
    )
    build_scratch_model(records, work / "model", arch=arch, vocab_size=400, seed=0, template="qwen")
    from conch.modeling import load

    model, tokenizer = load(str(work / "model"))
    chunks = [c for d in docs for c in Chunker(tokenizer, 96, 12).chunk_document(d)]
    tokenizer.save_pretrained(work / "index" / "tokenizer")
    build_index(
        chunks,
        work / "index",
        embedder=Embedder("all-MiniLM-L6-v2"),
        cache=EmbeddingCache(work / "cache.sqlite"),
        tokenizer_path="tokenizer",
        max_context_tokens=CONTEXT,
        retrieval={"top_k": 3},
    )
    return SimpleNamespace(work=work, model=model, tokenizer=tokenizer, kb=kb)


@pytest.fixture(scope="module")
def server(rag_setup):
    import uvicorn
    from fastapi import FastAPI

    from conch.modeling import generate, render
    from conch.rag.api import build_router

    calls = []

    async def complete(messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        calls.append(messages)
        prompt = render(rag_setup.tokenizer, messages)
        (text,) = await asyncio.to_thread(
            generate, rag_setup.model, rag_setup.tokenizer, [prompt], max_tokens
        )
        return text

    app = FastAPI()
    app.include_router(build_router(str(rag_setup.work / "index"), complete, max_new_tokens=24))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started and time.time() < deadline:
        time.sleep(0.1)
    assert srv.started, "uvicorn did not start"
    yield SimpleNamespace(url=f"http://127.0.0.1:{port}", calls=calls)
    srv.should_exit = True
    thread.join(timeout=10)


def test_query_returns_ranked_chunks_with_scores_and_sources(server):
    resp = httpx.post(
        f"{server.url}/v1/rag/query", json={"question": "What instrument does Squidward play?"}, timeout=60
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    hits = body["hits"]
    assert hits and hits[0]["source"] == "lore/squidward.html"
    assert any("clarinet" in h["text"] for h in hits if h["source"] == "lore/squidward.html")
    assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and len(hits) <= body["top_k"] == 3
    assert all(h["similarity"] >= body["similarity_threshold"] for h in hits)
    assert {"score", "vector_similarity", "keyword_similarity", "chunk_id", "title", "heading_path"} <= set(
        hits[0]
    )
    zh = httpx.post(
        f"{server.url}/v1/rag/query", json={"question": "怎样请教神奇海螺？", "top_k": 1}, timeout=60
    )
    assert [h["source"] for h in zh.json()["hits"]] == ["lore_zh/神奇海螺.md"]
    loose = httpx.post(
        f"{server.url}/v1/rag/query",
        json={"question": "zebra", "similarity_threshold": -1, "top_k": 2},
        timeout=60,
    )
    assert len(loose.json()["hits"]) == 2


def test_chat_answers_from_numbered_chunks_through_the_openai_client(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1/rag", api_key="unused", max_retries=0)
    before = len(server.calls)
    resp = client.chat.completions.create(
        model="conch",
        messages=[{"role": "user", "content": "How do you consult the Magic Conch?"}],
        max_tokens=16,
    )
    assert len(server.calls) == before + 1, "the served model generated the answer"
    system = server.calls[-1][0]["content"]
    assert system.count("\n[1] ") == 1 and "[2] " in system and "only the numbered sources" in system
    extra = resp.model_extra
    refs = extra["references"]
    assert refs[0]["index"] == 1 and refs[0]["source"] == "lore/magic-conch.md"
    assert f"[1] {refs[0]['title']}" in system and refs[0]["text"] in system
    content = resp.choices[0].message.content
    assert [c["index"] for c in extra["citations"]] == cited_numbers(content, len(refs))
    assert extra["answered_from_knowledge_base"] is True and resp.object == "chat.completion"


def test_chat_says_it_does_not_know_when_nothing_passes_the_threshold(server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1/rag", api_key="unused", max_retries=0)
    before = len(server.calls)
    resp = client.chat.completions.create(
        model="conch", messages=[{"role": "user", "content": "Who won the football world cup in 1998?"}]
    )
    assert resp.choices[0].message.content == NO_ANSWER["en"]
    assert resp.model_extra["citations"] == [] and resp.model_extra["references"] == []
    assert len(server.calls) == before, "the model is not asked to make something up"
    zh = client.chat.completions.create(
        model="conch", messages=[{"role": "user", "content": "如何申请美国签证？"}]
    )
    assert zh.choices[0].message.content == NO_ANSWER["zh"]


def test_bad_requests_get_clear_messages(server):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1/rag", api_key="unused", max_retries=0)
    long_question = "Why does the conch say nothing? " * 200
    with pytest.raises(openai.BadRequestError, match=r"the question is \d+ tokens.*context of 512 tokens"):
        client.chat.completions.create(model="conch", messages=[{"role": "user", "content": long_question}])
    resp = httpx.post(f"{server.url}/v1/rag/query", json={"question": long_question}, timeout=60)
    assert resp.status_code == 400 and "shorten the question" in resp.json()["detail"]
    with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
        client.chat.completions.create(
            model="conch", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="conch", messages=[{"role": "system", "content": "be brief"}])
    assert httpx.post(f"{server.url}/v1/rag/query", json={"question": ""}, timeout=60).status_code == 422


def test_citation_numbers_are_parsed_within_range():
    assert cited_numbers("See [2] and [1, 3]; also 【2】 and [9].", 3) == [2, 1, 3]
    assert cited_numbers("no sources here", 3) == []


def test_eval_script_writes_metrics_answers_and_report(rag_setup, tmp_path):
    questions = [q for q in read_jsonl(REPO / "kb/questions.jsonl") if set(q["sources"]) & set(SUBSET)]
    questions += [q for q in read_jsonl(REPO / "kb/questions.jsonl") if not q["sources"]][:2]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in questions))
    out = {"metrics": tmp_path / "m.json", "results": tmp_path / "r.jsonl", "report": tmp_path / "report.md"}
    # the same model stands in for the base model the merged one is compared with
    (tmp_path / "base.json").write_text(json.dumps({"path": str(rag_setup.work / "model")}))
    smk = SimpleNamespace(
        input=SimpleNamespace(
            index=str(rag_setup.work / "index"),
            questions=str(tmp_path / "q.jsonl"),
            merged=str(rag_setup.work / "model"),
            base=str(tmp_path / "base.json"),
        ),
        output=SimpleNamespace(**{k: str(v) for k, v in out.items()}),
        params=SimpleNamespace(answer_questions=2, max_new_tokens=8),
        log=[str(tmp_path / "eval.log")],
        wildcards=SimpleNamespace(experiment="default"),
    )
    runpy.run_path(str(REPO / "workflow_scripts" / "rag_eval.py"), init_globals={"snakemake": smk})
    metrics = json.loads(out["metrics"].read_text())
    assert metrics["questions"] == len(questions) and metrics["unanswerable"] == 2
    assert metrics["recall_at_k"] >= 0.8 and 0 < metrics["mrr"] <= 1 and metrics["no_answer"] == 1.0
    assert metrics["answers"]["generated"] == 2 and 0 <= metrics["answers"]["citation_rate"] <= 1
    assert metrics["answers_base"] == {**metrics["answers"], "model": str(rag_setup.work / "model")}
    rows = read_jsonl(out["results"])
    answered = [r for r in rows if "answer" in r]
    assert len(answered) == 2 and {r["lang"] for r in answered} == {"en", "zh"}
    report = out["report"].read_text()
    assert "| recall_at_k |" in report and "citation rate" in report
