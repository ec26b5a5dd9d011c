"""Completions: POST /v1/completions, a raw prompt continued (no chat template)."""

from __future__ import annotations

import uuid

from conch.engine.request import Completion
from conch.server import protocol as p
from conch.server.serving import Serving, check_finished, json_response, stream_response


class _CompletionStream:
    def __init__(self, rid: str, model: str):
        self.rid, self.model = rid, model

    def opening(self) -> list[dict]:
        return []

    def piece(self, text: str) -> list[dict]:
        return [p.completion_body(self.rid, self.model, text, None, None, chunk=True)]

    def closing(self, result: Completion) -> list[dict]:
        return [p.completion_body(self.rid, self.model, "", result.finish_reason, None, chunk=True)]

    def usage(self, use: dict) -> dict:
        return p.usage_chunk(self.rid, self.model, "text_completion", use)


class CompletionServing(Serving):
    async def create(self, body: p.CompletionRequest, http_request):
        engine = self.models.engine(body.model)
        ids, budget = await self.tokenize(engine, body.prompt_text(), body.requested_tokens(), "prompt")
        handle = self.submit(engine, ids, body.sampling(), budget, stream=body.stream)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if body.stream:
            return stream_response(handle, _CompletionStream(rid, engine.name), body.include_usage)
        result = check_finished(await self.wait(http_request, handle))
        return json_response(
            p.completion_body(
                rid,
                engine.name,
                result.text,
                result.finish_reason,
                p.usage(result.prompt_tokens, result.completion_tokens),
            )
        )
