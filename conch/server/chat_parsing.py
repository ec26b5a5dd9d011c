"""The assistant message out of generated text: reasoning first, then tool calls, then what is left as content.

`ParsedOutput` is the ChatOutput for requests whose answers need parsing: a reasoning model's thinking
becomes `reasoning_content` (conch.model.reasoning splits it off, as vLLM's deepseek_r1 parser does), and with tools
the answer's calls become `tool_calls` (parsed by the model's LLaMA-Factory template). Streaming and whole
answers go through the same steps, so the streamed deltas add up to the whole message.

While streaming, content is sent as it comes until the answer reaches the format's call marker
("<tool_call>", "Action:" ...); from there the text is held until generation ends and then parsed once.
A call is thus never half-sent: parsed calls go out as OpenAI streams them (a delta with index, id and name,
then one with the arguments) and finish_reason becomes `tool_calls`; text that does not parse goes out as
plain content with the engine's own finish_reason.
"""

from __future__ import annotations

import uuid

from conch.llamafactory.trained_format import ToolCall, TrainedFormat
from conch.model.reasoning import held_back  # the end of a text that may begin a marker: one helper for both


class ToolCallStream:
    """Content until the call marker, then the calls (parsed at the end); only calls to `tool_names` count,
    and with `single` only the first (parallel_tool_calls false)."""

    def __init__(self, fmt: TrainedFormat, tool_names: set[str], single: bool = False):
        self.fmt, self.tool_names, self.single = fmt, tool_names, single
        self.call_text = None if fmt.call_start else ""  # None: no call seen yet
        self.pending = ""

    def feed(self, text: str) -> str:
        """The content that can go to the client now."""
        if self.call_text is not None:
            self.call_text += text
            return ""
        text, self.pending = self.pending + text, ""
        at = text.find(self.fmt.call_start)
        if at >= 0:
            self.call_text = text[at:]
            return text[:at]
        hold = held_back(text, self.fmt.call_start)
        self.pending = text[len(text) - hold :]
        return text[: len(text) - hold]

    def finish(self) -> tuple[str, list[ToolCall]]:
        """(content still to send, the calls): text that is not calls to known tools is all content."""
        if self.call_text is None:
            rest, self.pending = self.pending, ""
            return rest, []
        calls = self.fmt.extract(self.call_text)
        if not calls or any(c.name not in self.tool_names for c in calls):
            return self.call_text, []
        return "", calls[:1] if self.single else calls


class ParsedOutput:
    """A ChatOutput (conch.server.serving_chat). `reasoning` has StreamSplitter's feed/finish
    (conch.model.reasoning); `tools` is a ToolCallStream."""

    def __init__(self, reasoning=None, tools: ToolCallStream | None = None):
        self.reasoning, self.tools = reasoning, tools
        self.calls: list[ToolCall] = []
        self.started = False  # content sent yet (leading whitespace before it is dropped)

    def _deltas(self, thought: str, answer: str, parsed: bool = True) -> list[dict]:
        content = self.tools.feed(answer) if self.tools and parsed else answer
        if not self.started:
            content = content.lstrip()
            self.started = bool(content)
        return [
            *([{"reasoning_content": thought}] if thought else []),
            *([{"content": content}] if content else []),
        ]

    def delta(self, piece: str) -> list[dict]:
        thought, answer = self.reasoning.feed(piece) if self.reasoning else ("", piece)
        return self._deltas(thought, answer)

    def flush(self) -> list[dict]:
        deltas = self._deltas(*self.reasoning.finish()) if self.reasoning else []
        if self.tools:
            rest, self.calls = self.tools.finish()
            deltas += self._deltas("", rest, parsed=False)
        for index, call in enumerate(self.calls):
            head = {"index": index, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
            deltas.append({"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]})
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": call.arguments}}]})
        return deltas

    def message(self, text: str) -> dict:
        """The whole message: the same steps as streaming, the deltas joined."""
        thought, content, calls = [], [], []
        for delta in [*self.delta(text), *self.flush()]:
            thought.append(delta.get("reasoning_content", ""))
            content.append(delta.get("content", ""))
            for call in delta.get("tool_calls", ()):
                if "id" in call:
                    calls.append({k: call[k] for k in ("id", "type")} | {"function": dict(call["function"])})
                else:
                    calls[call["index"]]["function"]["arguments"] += call["function"]["arguments"]
        message = {"role": "assistant", "content": "".join(content).strip() or (None if calls else "")}
        if self.reasoning:
            message["reasoning_content"] = "".join(thought).strip() or None
        if calls:
            message["tool_calls"] = calls
        return message

    def finish_reason(self, reason: str) -> str:
        return "tool_calls" if self.calls else reason
