"""Start the server on a free loopback port, send real requests, check the answers, stop it.

Used by the `serve` rule (so a model is only called deployed once it has answered) and by the tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    command: list[str], base_url: str, log_path: str | Path, timeout: float = 180, env: dict | None = None
) -> Iterator[subprocess.Popen]:
    """The server process, up and healthy; always stopped (with its whole process group) on exit."""
    with open(log_path, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before it was healthy; see {log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after {timeout:.0f}s; see {log_path}")
            time.sleep(0.5)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _message_content(body: dict) -> str | None:
    """The first choice's message text of a chat completion body, None where there is none."""
    return (body.get("choices") or [{}])[0].get("message", {}).get("content")


def smoke_test(
    base_url: str,
    name: str,
    prompt: str,
    expected: str | None,
    max_tokens: int,
    rag_question: dict | None = None,
) -> dict:
    """Real requests against a running server; returns a record of what was sent, received and checked.
    With `rag_question` (a line of rag.questions the knowledge base answers: "question", "sources"), the
    knowledge-base endpoints are asked it too, and must find a chunk of a source document and answer from it."""
    checks = {}
    r = httpx.get(
        f"{base_url}/generate", params={"prompt": prompt, "max_new_tokens": max_tokens}, timeout=120
    )
    generated = r.json().get("generated_text") if r.status_code == 200 else None
    checks["generate_status_200"] = r.status_code == 200
    checks["generate_text_nonempty"] = isinstance(generated, str) and bool(generated.strip())
    body = {
        "model": name,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    r = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120)
    chat = r.json() if r.status_code == 200 else {}
    content = _message_content(chat)
    checks["chat_status_200"] = r.status_code == 200
    checks["chat_schema"] = chat.get("object") == "chat.completion" and chat.get("model") == name
    checks["chat_content_nonempty"] = isinstance(content, str) and bool(content.strip())
    if expected is not None:
        # Greedy decoding is deterministic: the server must say what the model says offline.
        checks["generate_matches_offline_greedy"] = generated == expected
        checks["chat_matches_offline_greedy"] = content == expected
    record = _rag_checks(base_url, name, rag_question, max_tokens, checks) if rag_question else {}
    return {
        "prompt": prompt,
        "generated_text": generated,
        "chat_content": content,
        **record,
        "expected": expected,
        "checks": checks,
        "passed": all(checks.values()),
    }


def _rag_checks(base_url: str, name: str, rag_question: dict, max_tokens: int, checks: dict) -> dict:
    """A question the knowledge base answers must retrieve a chunk of one of its source documents, and the RAG
    chat must answer from the knowledge base (not the canned "I don't know") with such a chunk among the
    numbered sources it returns. Whether the model itself writes "[n]" is recorded, not required: a model
    never trained on RAG prompts (the scratch default) does not."""
    question, sources = rag_question["question"], set(rag_question["sources"])
    r = httpx.post(f"{base_url}/v1/rag/query", json={"question": question}, timeout=120)
    hits = (r.json().get("hits") if r.status_code == 200 else None) or []
    checks["rag_query_status_200"] = r.status_code == 200
    checks["rag_query_hits_a_source_document"] = any(h.get("source") in sources for h in hits)
    body = {"model": name, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
    r = httpx.post(f"{base_url}/v1/rag/chat/completions", json=body, timeout=120)
    answer = r.json() if r.status_code == 200 else {}
    rag_content = _message_content(answer)
    references = [ref.get("source") for ref in answer.get("references") or []]
    checks["rag_chat_status_200"] = r.status_code == 200
    checks["rag_chat_content_nonempty"] = isinstance(rag_content, str) and bool(rag_content.strip())
    checks["rag_chat_answered_from_knowledge_base"] = answer.get("answered_from_knowledge_base") is True
    checks["rag_chat_references_a_source_document"] = bool(sources.intersection(references))
    return {
        "rag_question": question,
        "rag_sources": sorted(sources),
        "rag_hits": len(hits),
        "rag_hit_sources": [h.get("source") for h in hits],
        "rag_chat_content": rag_content,
        "rag_chat_references": references,
        "rag_chat_model_citations": [c.get("index") for c in answer.get("citations") or []],
    }
