"""Completions: POST /v1/completions, a raw prompt continued (no chat template)."""

from __future__ import annotations

import uuid

from conch.engine import Completion
from conch.server import protocol as p
from conch.server.logprob_format import TokenTexts, completion_logprobs
from conch.server.serving import Serving, check_finished, json_response, stream_response, total_usage


class _CompletionStream:
    def __init__(self, rid: str, model: str, choices: int, texts: TokenTexts | None):
        self.rid, self.model, self.texts = rid, model, texts
        self._sent = [b""] * choices  # each choice's answer so far, in bytes (for `text_offset`)

    def _chunk(self, index: int, text: str, finish_reason: str | None, logprobs: list | None) -> dict:
        shown = None
        if logprobs:
            shown, self._sent[index] = completion_logprobs(logprobs, self.texts, self._sent[index])
        choice = p.completion_choice(index, text, finish_reason, shown)
        return p.completion_body(self.rid, self.model, [choice], None, chunk=True)

    def opening(self, index: int) -> list[dict]:
        return []

    def piece(self, index: int, text: str, logprobs: list | None) -> list[dict]:
        return [self._chunk(index, text, None, logprobs)]

    def closing(self, index: int, result: Completion, logprobs: list | None) -> list[dict]:
        return [self._chunk(index, "", result.finish_reason, logprobs)]

    def usage(self, use: dict) -> dict:
        return p.usage_chunk(self.rid, self.model, "text_completion", use)


class CompletionServing(Serving):
    async def create(self, body: p.CompletionRequest, http_request):
        engine = self.models.engine(body.model)
        ids, budget = await self.tokenize(engine, body.prompt_text(), body.requested_tokens(), "prompt")
        handles = self.submit_choices(engine, ids, body, budget)
        rid = f"cmpl-{uuid.uuid4().hex}"
        texts = self.token_texts(engine) if body.logprobs is not None else None
        if body.stream:
            shape = _CompletionStream(rid, engine.name, len(handles), texts)
            return stream_response(handles, shape, body.include_usage)
        results = check_finished(await self.wait(http_request, handles))
        choices = [
            p.completion_choice(
                index,
                result.text,
                result.finish_reason,
                None if result.logprobs is None else completion_logprobs(result.logprobs, texts)[0],
            )
            for index, result in enumerate(results)
        ]
        return json_response(p.completion_body(rid, engine.name, choices, total_usage(results)))
