"""Chat: POST /v1/chat/completions, and the walkthrough's GET /generate (one user message, greedy).

Generated text reaches the client through a `ChatOutput`, made per request by `ChatServing.output_for`: it
turns the text into the assistant message (whole, or as deltas when streaming). The default passes the text
through as `content`; parsing tool calls or reasoning out of the text is a matter of another `ChatOutput`.
"""

from __future__ import annotations

import uuid

from conch.engine.client import EngineClient
from conch.engine.request import Completion
from conch.engine.sampling import SamplingParams
from conch.server import protocol as p
from conch.server.serving import Serving, check_finished, json_response, stream_response
from conch.server.tool_chat import TemplateChat


class ChatOutput:
    """Generated text as the assistant's message: content only."""

    def delta(self, piece: str) -> dict | list[dict] | None:
        """Streaming: the delta (or deltas, a chunk each) for a new piece of text; None to send nothing yet."""
        return {"content": piece}

    def flush(self) -> dict | list[dict] | None:
        """Streaming: a last delta once generation has ended (text held back until then), or None."""
        return None

    def message(self, text: str) -> dict:
        """Not streaming: the whole message."""
        return {"role": "assistant", "content": text}

    def finish_reason(self, reason: str) -> str:
        return reason


class _ChatStream:
    def __init__(self, rid: str, model: str, output: ChatOutput):
        self.rid, self.model, self.output = rid, model, output

    def opening(self) -> list[dict]:
        return [p.chat_chunk(self.rid, self.model, {"role": "assistant", "content": ""})]

    def _chunks(self, deltas: dict | list[dict] | None) -> list[dict]:
        deltas = [] if deltas is None else [deltas] if isinstance(deltas, dict) else deltas
        return [p.chat_chunk(self.rid, self.model, delta) for delta in deltas]

    def piece(self, text: str) -> list[dict]:
        return self._chunks(self.output.delta(text))

    def closing(self, result: Completion) -> list[dict]:
        last = self.output.flush()
        reason = self.output.finish_reason(result.finish_reason)
        return [*self._chunks(last), p.chat_chunk(self.rid, self.model, {}, reason)]

    def usage(self, use: dict) -> dict:
        return p.usage_chunk(self.rid, self.model, "chat.completion.chunk", use)


class ChatServing(Serving):
    def __init__(self, models):
        super().__init__(models)
        self.template_chat = TemplateChat(models.settings)

    def output_for(self, engine: EngineClient, body: p.ChatCompletionRequest, forced: str = ""):
        """The post-processor of this request's generated text (tools, reasoning: conch.server.tool_chat)."""
        return self.template_chat.output(engine, body, forced) or ChatOutput()

    async def prompt(self, engine: EngineClient, body: p.ChatCompletionRequest) -> tuple[list[int], int, str]:
        """(prompt ids, token budget, forced start of the answer); tool requests in the trained format."""
        if (tool_prompt := await self.template_chat.prompt(self, engine, body)) is not None:
            return tool_prompt
        text = await self.render_chat(engine, self.conversation(body))
        return (*await self.tokenize(engine, text, body.requested_tokens(), "messages"), "")

    @staticmethod
    def conversation(body: p.ChatCompletionRequest) -> list[dict]:
        """The messages as the chat template takes them."""
        return [{"role": m.role, "content": m.text()} for m in body.messages]

    async def create(self, body: p.ChatCompletionRequest, http_request):
        engine = self.models.engine(body.model)
        ids, budget, forced = await self.prompt(engine, body)
        handle = self.submit(engine, ids, body.sampling(), budget, stream=body.stream)
        rid, output = f"chatcmpl-{uuid.uuid4().hex}", self.output_for(engine, body, forced)
        if body.stream:
            return stream_response(handle, _ChatStream(rid, engine.name, output), body.include_usage)
        result = check_finished(await self.wait(http_request, handle))
        return json_response(
            p.chat_body(
                rid,
                engine.name,
                output.message(result.text),
                output.finish_reason(result.finish_reason),
                p.usage(result.prompt_tokens, result.completion_tokens),
            )
        )

    async def generate(self, http_request, prompt: str, max_new_tokens: int | None, model: str | None):
        """The walkthrough's endpoint: a greedy answer to one user message, `{"generated_text": ...}`."""
        engine = self.models.engine(model)
        text = await self.render_chat(engine, [{"role": "user", "content": prompt}])
        ids, budget = await self.tokenize(engine, text, max_new_tokens, "prompt")
        handle = self.submit(engine, ids, SamplingParams(), budget, stream=False)
        result = check_finished(await self.wait(http_request, handle))
        return json_response({"generated_text": result.text})

    async def complete(self, messages: list[dict], max_tokens: int, temperature: float = 0.0) -> str:
        """The default model's answer to a conversation (the hook RAG builds on)."""
        engine: EngineClient = self.models.engine(None)
        ids, budget = await self.tokenize(
            engine, await self.render_chat(engine, messages), max_tokens, "messages"
        )
        handle = self.submit(engine, ids, SamplingParams(temperature=temperature), budget, stream=False)
        try:
            result = await handle.result()
        finally:
            handle.cancel()
        if result.finish_reason == "error":
            raise RuntimeError(f"generation failed: {result.error}")
        return result.text
