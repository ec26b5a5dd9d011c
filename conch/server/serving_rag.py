"""Knowledge-base answers: POST /v1/rag/query (ranked chunks) and POST /v1/rag/chat/completions (an answer from
them), mounted with `--rag-index DIR`. Retrieval and the answer prompt are conch.rag's; this is the serving.

The chat endpoint is /v1/chat/completions over retrieved sources: the same request schema (plus `top_k`) and
errors, the model named in `model`, streamed or not, with the real `finish_reason` and `usage`. The last user
message is the question; the chunks that fit the model's context (after the question and `max_tokens`) are
numbered [1]..[n] in a system message that asks the model to answer only from them and cite them. The response
adds `references` (the chunks given), `citations` (those the answer cites), `answered_from_knowledge_base` and
`retrieval_ms`; a stream carries the first three with its first chunk and `citations` with its closing one.
When no chunk passes the similarity threshold the model is not asked: the answer is a fixed "I don't know",
with no tokens used.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from conch.engine import Completion, EngineClient, Handle
from conch.rag.prompt import (
    QuestionTooLong,
    build_messages,
    check_question,
    cited_numbers,
    no_answer,
    public_hit,
)
from conch.rag.retrieve import Retriever
from conch.server import protocol as p
from conch.server.http_errors import ApiError
from conch.server.serving import check_finished, json_response, total_usage
from conch.server.serving_chat import ChatServing, ChatStream


class _RagStream(ChatStream):
    def __init__(self, rid, model, outputs, texts, extras: dict, used: list[dict]):
        super().__init__(rid, model, outputs, texts)
        self.extras, self.used, self.text = extras, used, [[] for _ in outputs]

    def opening(self, index: int) -> list[dict]:
        chunks = super().opening(index)
        return [{**chunk, **self.extras} for chunk in chunks] if index == 0 else chunks

    def piece(self, index: int, text: str, logprobs: list | None) -> list[dict]:
        self.text[index].append(text)
        return super().piece(index, text, logprobs)

    def closing(self, index: int, result: Completion, logprobs: list | None) -> list[dict]:
        *chunks, last = super().closing(index, result, logprobs)
        return [*chunks, {**last, "citations": _citations("".join(self.text[index]), self.used)}]


def _citations(text: str, used: list[dict]) -> list[dict]:
    return [public_hit(used[n - 1], n) for n in cited_numbers(text, len(used))]


class RagServing(ChatServing):
    def __init__(self, models, index_dir: str):
        super().__init__(models)
        self.retriever = Retriever(index_dir)
        self._lock = threading.Lock()  # one retrieval at a time: the embedding model is not re-entrant

    def _search(self, question: str, top_k: int | None, threshold: float | None) -> tuple[list[dict], float]:
        started = time.perf_counter()
        with self._lock:
            hits = self.retriever.search(question, top_k=top_k, threshold=threshold)
        return hits, round((time.perf_counter() - started) * 1000, 2)

    @staticmethod
    def _fits(engine: EngineClient, question: str, max_tokens: int, param: str):
        """A 400 naming `param` if the question leaves no room in the model's context; else a token counter."""

        def count(text: str) -> int:
            return len(engine.encode(text))

        try:
            check_question(question, count, engine.context_length, max_tokens)
        except QuestionTooLong as exc:
            raise ApiError(400, str(exc), param=param) from None
        return count

    async def query(self, body: p.RagQueryRequest):
        self._fits(self.models.engine(None), body.question, 0, "question")
        hits, ms = await asyncio.to_thread(self._search, body.question, body.top_k, body.similarity_threshold)
        settings = self.retriever.settings
        threshold = body.similarity_threshold
        return json_response(
            {
                "question": body.question,
                "hits": [public_hit(h) for h in hits],
                "top_k": body.top_k or settings["top_k"],
                "similarity_threshold": settings["similarity_threshold"] if threshold is None else threshold,
                "retrieval_ms": ms,
            }
        )

    async def create(self, body: p.RagChatCompletionRequest, http_request):
        engine = self.models.engine(body.model)
        question = next(
            (m.text() for m in reversed(body.messages) if m.role == "user" and m.text().strip()), None
        )
        if question is None:
            raise ApiError(
                400, "no user message with text: the last user turn is the question", param="messages"
            )
        budget = min(body.requested_tokens() or self.settings.max_new_tokens, self.settings.max_new_tokens)
        count = self._fits(engine, question, budget, "messages")
        hits, ms = await asyncio.to_thread(self._search, question, body.top_k, None)
        messages, used = build_messages(question, hits, count, engine.context_length, budget)
        extras = {
            "references": [public_hit(h, n) for n, h in enumerate(used, start=1)],
            "answered_from_knowledge_base": bool(used),
            "retrieval_ms": ms,
        }
        if used:
            ids, budget = await self.tokenize(
                engine, await self.render_chat(engine, messages), budget, "messages"
            )
            handles = self.submit_choices(engine, ids, body, budget)
        else:  # nothing to answer from: the model is not asked
            handles = [_answered(no_answer(question), body.logprobs) for _ in range(body.n)]
        rid = f"chatcmpl-rag-{uuid.uuid4().hex}"
        if body.stream:
            return self.stream(engine, body, handles, rid, _RagStream, extras=extras, used=used)
        if used:
            results = check_finished(await self.wait(http_request, handles))
        else:
            results = [handle.finished for handle in handles]
        chat = p.chat_body(rid, engine.name, self.choices(engine, body, results), total_usage(results))
        # Citations: those of the first choice's answer.
        return json_response({**chat, **extras, "citations": _citations(results[0].text, used)})


def _answered(answer: str, logprobs: bool | None) -> Handle:
    """A handle already holding a fixed answer (no tokens generated, so no logprobs either)."""
    handle = Handle()
    handle.put(answer if not logprobs else (answer, []))
    handle.put(Completion(answer, "stop", 0, 0, logprobs=[] if logprobs else None))
    return handle
