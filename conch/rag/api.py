"""FastAPI router for the knowledge base, mounted by the conch server when started with `--rag-index DIR`.

    POST /v1/rag/query              {"question", "top_k"?, "similarity_threshold"?} -> ranked chunks, scores, sources
    POST /v1/rag/chat/completions   OpenAI chat schema; answers from retrieved chunks numbered [1]..[n] and adds
                                    `citations` (the chunks the answer cites) and `references` (all it was given)

The server passes `complete(messages, max_tokens, temperature=0.0) -> str`, which generates with the served
model; this module never loads a language model itself. Retrieval runs in a worker thread so the event loop
keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from conch.rag.chunk import load_tokenizer
from conch.rag.prompt import (
    QuestionTooLong,
    build_messages,
    check_question,
    cited_numbers,
    no_answer,
    public_hit,
)
from conch.rag.retrieve import Retriever

DEFAULT_MAX_TOKENS = 128


class QueryRequest(BaseModel):
    question: str = Field(min_length=1)
    top_k: int | None = Field(default=None, ge=1, le=100)
    similarity_threshold: float | None = Field(default=None, ge=-1, le=1)


class Message(BaseModel):
    role: str
    content: str


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=0.0, ge=0)
    stream: bool = False
    top_k: int | None = Field(default=None, ge=1, le=100)


def bad_request(param: str, message: str) -> JSONResponse:
    """OpenAI's error shape, so the openai client shows the message; `detail` as FastAPI clients expect it."""
    text = f"{param}: {message}"
    error = {"message": text, "type": "invalid_request_error", "param": param, "code": None}
    return JSONResponse(status_code=400, content={"error": error, "detail": text})


def _last_question(messages: list[Message]) -> str | None:
    for message in reversed(messages):
        if message.role == "user" and message.content.strip():
            return message.content
    return None


def build_router(
    index_dir: str,
    complete,
    *,
    retriever: Retriever | None = None,
    tokenizer=None,
    max_context_tokens: int | None = None,
    max_new_tokens: int = DEFAULT_MAX_TOKENS,
) -> APIRouter:
    """Routes over the index in `index_dir`. The tokenizer and context size default to those the index was
    chunked for (meta.json), which are the served model's."""
    retriever = retriever or Retriever(index_dir)
    meta = retriever.index.meta
    if tokenizer is None:
        # meta.json names the tokenizer the index was chunked with, relative to the index folder
        path = Path(index_dir) / meta["tokenizer"] if meta.get("tokenizer") else None
        if path is None or not path.exists():
            raise FileNotFoundError(
                f"{index_dir}/meta.json names tokenizer {meta.get('tokenizer')!r}, which is not "
                "there; pass tokenizer= (the served model's) to build_router"
            )
        tokenizer = load_tokenizer(str(path))
    max_context_tokens = max_context_tokens or meta.get("max_context_tokens")
    lock = threading.Lock()  # one retrieval at a time: the embedding model is not re-entrant across threads

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def search(question: str, top_k: int | None, threshold: float | None) -> tuple[list[dict], float]:
        started = time.perf_counter()
        with lock:
            hits = retriever.search(question, top_k=top_k, threshold=threshold)
        return hits, (time.perf_counter() - started) * 1000

    router = APIRouter(tags=["rag"])

    @router.post("/v1/rag/query")
    async def query(req: QueryRequest):
        try:
            check_question(req.question, count_tokens, max_context_tokens, 0)
        except QuestionTooLong as err:
            return bad_request("question", str(err))
        hits, ms = await asyncio.to_thread(search, req.question, req.top_k, req.similarity_threshold)
        settings = retriever.settings
        return {
            "question": req.question,
            "hits": [public_hit(h) for h in hits],
            "top_k": req.top_k or settings["top_k"],
            "similarity_threshold": settings["similarity_threshold"]
            if req.similarity_threshold is None
            else req.similarity_threshold,
            "retrieval_ms": round(ms, 2),
        }

    @router.post("/v1/rag/chat/completions")
    async def chat(req: ChatRequest):
        if req.stream:
            return bad_request(
                "stream", "streaming is not supported by /v1/rag/chat/completions; send stream=false"
            )
        question = _last_question(req.messages)
        if question is None:
            return bad_request("messages", "no user message with text; the last user turn is the question")
        max_tokens = min(req.max_tokens or max_new_tokens, max_new_tokens)
        try:
            check_question(question, count_tokens, max_context_tokens, max_tokens)
        except QuestionTooLong as err:
            return bad_request("messages[-1].content", str(err))
        hits, ms = await asyncio.to_thread(search, question, req.top_k, None)
        messages, used = build_messages(question, hits, count_tokens, max_context_tokens, max_tokens)
        if used:
            text = await complete(messages, max_tokens, req.temperature or 0.0)
            cited = cited_numbers(text, len(used))
        else:
            text, cited = no_answer(question), []
        return {
            "id": f"chatcmpl-rag-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model or "conch-rag",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "citations": [public_hit(used[n - 1], n) for n in cited],
            "references": [public_hit(h, n) for n, h in enumerate(used, start=1)],
            "retrieval_ms": round(ms, 2),
            "answered_from_knowledge_base": bool(used),
        }

    return router
