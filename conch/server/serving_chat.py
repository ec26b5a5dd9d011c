"""Chat: POST /v1/chat/completions, and the walkthrough's GET /generate (one user message, greedy).

Generated text reaches the client through a `ChatOutput`, made per choice by `ChatServing.output_for`: it
turns the text into the assistant message (whole, or as deltas when streaming). The default passes the text
through as `content`; parsing tool calls or reasoning out of the text is a matter of another `ChatOutput`.
"""

from __future__ import annotations

import uuid

from conch.engine import Completion, EngineClient, Handle, SamplingParams
from conch.server import protocol as p
from conch.server.logprob_format import TokenTexts, chat_logprobs
from conch.server.serving import Serving, check_finished, json_response, stream_response, total_usage
from conch.server.tool_chat import TemplateChat


def _listed(deltas: dict | list[dict] | None) -> list[dict]:
    return [] if deltas is None else [deltas] if isinstance(deltas, dict) else deltas


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


class ChatStream:
    """Chunks of a streamed chat answer: one `ChatOutput` per choice; logprobs ride on the chunk carrying the
    text they belong to (or, if the output holds text back, on the next chunk it sends)."""

    def __init__(self, rid: str, model: str, outputs: list[ChatOutput], texts: TokenTexts | None = None):
        self.rid, self.model, self.outputs, self.texts = rid, model, outputs, texts
        self._held: list[list] = [[] for _ in outputs]  # logprob entries not sent yet, per choice

    def _chunk(self, index: int, delta: dict, finish_reason: str | None = None, logprobs=None) -> dict:
        entries = None
        if logprobs is not None:
            self._held[index] += logprobs
            if delta or finish_reason:
                entries, self._held[index] = self._held[index], []
        shown = None if entries is None else chat_logprobs(entries, self.texts)
        return p.chat_chunk(self.rid, self.model, delta, finish_reason, index, shown)

    def opening(self, index: int) -> list[dict]:
        return [p.chat_chunk(self.rid, self.model, {"role": "assistant", "content": ""}, None, index)]

    def piece(self, index: int, text: str, logprobs: list | None) -> list[dict]:
        deltas = _listed(self.outputs[index].delta(text))
        if not deltas:  # nothing to send yet: the logprobs wait for the next chunk
            self._chunk(index, {}, None, logprobs)
            return []
        return [self._chunk(index, d, None, logprobs if i == 0 else None) for i, d in enumerate(deltas)]

    def closing(self, index: int, result: Completion, logprobs: list | None) -> list[dict]:
        output = self.outputs[index]
        last = _listed(output.flush())
        reason = output.finish_reason(result.finish_reason)
        if last:
            chunks = [self._chunk(index, d, None, logprobs if i == 0 else None) for i, d in enumerate(last)]
            return [*chunks, p.chat_chunk(self.rid, self.model, {}, reason, index)]
        return [self._chunk(index, {}, reason, logprobs)]

    def usage(self, use: dict) -> dict:
        return p.usage_chunk(self.rid, self.model, "chat.completion.chunk", use)


class ChatServing(Serving):
    def __init__(self, models):
        super().__init__(models)
        self.template_chat = TemplateChat(models.settings)

    def output_for(self, engine: EngineClient, body: p.ChatRequest, forced: str = "") -> ChatOutput:
        """The post-processor of one choice's generated text (tools, reasoning: conch.server.tool_chat)."""
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

    def stream(
        self, engine, body, handles: list[Handle], rid: str, make=ChatStream, forced: str = "", **extras
    ):
        """The streamed answer (`make`: the ChatStream class, given `extras`)."""
        texts = self.token_texts(engine) if body.logprobs else None
        outputs = [self.output_for(engine, body, forced) for _ in handles]
        return stream_response(handles, make(rid, engine.name, outputs, texts, **extras), body.include_usage)

    def choices(self, engine, body, results: list[Completion], forced: str = "") -> list[dict]:
        """The non-streamed choices."""
        texts = self.token_texts(engine) if body.logprobs else None
        choices = []
        for index, result in enumerate(results):
            output = self.output_for(engine, body, forced)
            logprobs = None if result.logprobs is None else chat_logprobs(result.logprobs, texts)
            message = output.message(result.text)  # first: parsing it decides the finish_reason (tool_calls)
            reason = output.finish_reason(result.finish_reason)
            choices.append(p.chat_choice(index, message, reason, logprobs))
        return choices

    async def create(self, body: p.ChatCompletionRequest, http_request):
        engine = self.models.engine(body.model)
        ids, budget, forced = await self.prompt(engine, body)
        handles = self.submit_choices(engine, ids, body, budget)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if body.stream:
            return self.stream(engine, body, handles, rid, forced=forced)
        results = check_finished(await self.wait(http_request, handles))
        choices = self.choices(engine, body, results, forced)
        return json_response(p.chat_body(rid, engine.name, choices, total_usage(results)))

    async def generate(self, http_request, prompt: str, max_new_tokens: int | None, model: str | None):
        """The walkthrough's endpoint: a greedy answer to one user message, `{"generated_text": ...}`."""
        engine = self.models.engine(model)
        text = await self.render_chat(engine, [{"role": "user", "content": prompt}])
        ids, budget = await self.tokenize(engine, text, max_new_tokens, "prompt")
        handle = self.submit(engine, ids, SamplingParams(), budget, stream=False)
        (result,) = check_finished(await self.wait(http_request, [handle]))
        return json_response({"generated_text": result.text})
