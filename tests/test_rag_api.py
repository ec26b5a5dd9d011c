"""The knowledge-base endpoints of a real conch server on 127.0.0.1 (two tiny models, an index of a few example
documents), through the openai client and httpx; and the eval rule's script on the same index and model."""

from __future__ import annotations

import json
import os
import runpy
from types import SimpleNamespace

import httpx
import openai
import pytest
from conftest import REPO
from test_server_support import start_server, streamed_chat

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
    from conch.model.scratch import build_scratch_model

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
    from conch.model.modeling import load

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
    return SimpleNamespace(work=work, model=model, tokenizer=tokenizer, kb=kb, records=records, arch=arch)


@pytest.fixture(scope="module")
def server(rag_setup):
    """A real conch server with the index and two models: the one the index was chunked for ("conch") and
    another ("conch-b", other weights), which requests can pick by name."""
    from conch.model.scratch import build_scratch_model

    other = rag_setup.work / "model-b"
    build_scratch_model(
        rag_setup.records, other, arch=rag_setup.arch, vocab_size=400, seed=1, template="qwen"
    )
    config = rag_setup.work / "serve.yaml"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "conch", "path": str(rag_setup.work / "model")},
                    {"name": "conch-b", "path": str(other)},
                ],
                "max_new_tokens": 24,
            }
        )
    )
    return start_server("rag", ["--config", str(config), "--rag-index", str(rag_setup.work / "index")])


def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.base_url}/v1/rag", api_key="unused", max_retries=0, timeout=120)


def completion_tokens(server, model: str) -> float:
    return server.wait_idle(model).get(f'conch_completion_tokens_total{{model="{model}"}}', 0)


def test_query_returns_ranked_chunks_with_scores_and_sources(server):
    resp = httpx.post(
        f"{server.base_url}/v1/rag/query",
        json={"question": "What instrument does Squidward play?"},
        timeout=60,
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
        f"{server.base_url}/v1/rag/query", json={"question": "怎样请教神奇海螺？", "top_k": 1}, timeout=60
    )
    assert [h["source"] for h in zh.json()["hits"]] == ["lore_zh/神奇海螺.md"]
    loose = httpx.post(
        f"{server.base_url}/v1/rag/query",
        json={"question": "zebra", "similarity_threshold": -1, "top_k": 2},
        timeout=60,
    )
    assert len(loose.json()["hits"]) == 2


ASK = [{"role": "user", "content": "How do you consult the Magic Conch?"}]


def test_chat_answers_from_numbered_chunks_through_the_openai_client(server):
    before = completion_tokens(server, "conch")
    resp = client(server).chat.completions.create(model="conch", messages=ASK, max_tokens=16, temperature=0)
    extra = resp.model_extra
    refs = extra["references"]
    assert refs[0]["index"] == 1 and refs[0]["source"] == "lore/magic-conch.md"
    assert [c["index"] for c in extra["citations"]] == cited_numbers(
        resp.choices[0].message.content, len(refs)
    )
    assert extra["answered_from_knowledge_base"] is True and resp.object == "chat.completion"
    # The served model answered, and says how it ended: at end-of-turn, or at max_tokens.
    used = resp.usage.completion_tokens
    assert resp.model == "conch" and 0 < used <= 16 and used == completion_tokens(server, "conch") - before
    assert resp.choices[0].finish_reason == ("length" if used == 16 else "stop")
    # The prompt held the sources, not just the question.
    assert resp.usage.prompt_tokens > sum(len(r["text"]) for r in refs) // 8


def test_chat_routes_to_the_named_model_and_streams(server):
    rag = client(server)
    plain = rag.chat.completions.create(model="conch-b", messages=ASK, max_tokens=12, temperature=0)
    assert plain.model == "conch-b" and plain.usage.completion_tokens == 12
    default = rag.chat.completions.create(model="conch", messages=ASK, max_tokens=12, temperature=0)
    assert default.choices[0].message.content != plain.choices[0].message.content  # other weights answered
    before = completion_tokens(server, "conch-b")
    chunks = streamed_chat(rag, model="conch-b", messages=ASK, max_tokens=12, temperature=0)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == plain.choices[0].message.content
    )
    assert chunks[0].model_extra["references"] == plain.model_extra["references"]
    closing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in closing] == ["length"]
    assert closing[0].model_extra["citations"] == plain.model_extra["citations"]
    assert chunks[-1].usage.completion_tokens == 12 == completion_tokens(server, "conch-b") - before
    with pytest.raises(openai.NotFoundError, match="not found; available: conch, conch-b"):
        rag.chat.completions.create(model="gpt-4", messages=ASK)


def test_chat_takes_the_chat_endpoints_choices_logprobs_and_json_schema(server):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    resp = client(server).chat.completions.create(
        model="conch",
        messages=ASK,
        max_tokens=30,
        temperature=1.0,
        seed=2,
        n=2,
        logprobs=True,
        response_format={"type": "json_schema", "json_schema": {"name": "ok", "schema": schema}},
    )
    assert [c.index for c in resp.choices] == [0, 1] and resp.model_extra["references"]
    for choice in resp.choices:
        assert choice.finish_reason == "stop" and isinstance(json.loads(choice.message.content)["ok"], bool)
    # Usage sums the choices; logprobs cover every token but each choice's end-of-turn.
    assert sum(len(c.logprobs.content) for c in resp.choices) == resp.usage.completion_tokens - 2


def test_chat_says_it_does_not_know_when_nothing_passes_the_threshold(server):
    rag = client(server)
    before = completion_tokens(server, "conch")
    resp = rag.chat.completions.create(
        model="conch", messages=[{"role": "user", "content": "Who won the football world cup in 1998?"}]
    )
    assert resp.choices[0].message.content == NO_ANSWER["en"] and resp.choices[0].finish_reason == "stop"
    assert resp.model_extra["citations"] == [] and resp.model_extra["references"] == []
    assert (
        resp.usage.total_tokens == 0 and completion_tokens(server, "conch") == before
    )  # the model was not asked
    zh = rag.chat.completions.create(
        model="conch", messages=[{"role": "user", "content": "如何申请美国签证？"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in zh if c.choices) == NO_ANSWER["zh"]


def test_bad_requests_get_the_chat_endpoints_errors(server):
    rag = client(server)
    long_question = "Why does the conch say nothing? " * 200
    with pytest.raises(openai.BadRequestError, match=r"the question is \d+ tokens.*context of 512 tokens"):
        rag.chat.completions.create(model="conch", messages=[{"role": "user", "content": long_question}])
    resp = httpx.post(f"{server.base_url}/v1/rag/query", json={"question": long_question}, timeout=60)
    assert resp.status_code == 400 and "shorten the question" in resp.json()["error"]["message"]
    assert resp.json()["error"]["param"] == "question"
    with pytest.raises(openai.BadRequestError, match="no user message"):
        rag.chat.completions.create(model="conch", messages=[{"role": "system", "content": "be brief"}])
    for body, field in [
        ({"messages": ASK, "temperature": "hot"}, "temperature"),
        ({"messages": ASK, "top_k": 0}, "top_k"),
        ({"messages": ASK, "tools": []}, "tools"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ]:
        resp = httpx.post(f"{server.base_url}/v1/rag/chat/completions", json=body, timeout=60)
        assert resp.status_code == 422 and resp.json()["error"]["param"] == field, resp.text
    assert httpx.post(f"{server.base_url}/v1/rag/query", json={"question": ""}, timeout=60).status_code == 422


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
