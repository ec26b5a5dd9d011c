"""Chat requests that need the model's LLaMA-Factory template: tools, tool turns, reasoning output.

A model served with its template (`template:` in the settings, `--template` on the command line) gets:
- tool requests (`tools`, assistant `tool_calls`, `tool` messages) encoded with the template's own tool
  formatters (conch.llamafactory.trained_format), exactly as LLaMA-Factory trained on tool records, and the answer's
  calls parsed into `tool_calls` (conch.server.chat_parsing);
- for an R1-style template (conch.model.reasoning.markers), the thinking returned as `reasoning_content`.
Every other request renders with the model's Jinja chat template, unchanged.

tool_choice: `auto` lets the model choose; `none` leaves the tools out of the prompt and the answer
unparsed; `required` and a named function make the answer start with the format's call marker (and the
name), so the model writes the call's arguments. That steers by prompting, it does not constrain decoding:
a model that then writes something unparseable gets it back as content.
"""

from __future__ import annotations

import asyncio
import json
import threading

from conch.llamafactory.trained_format import FormatError, TrainedFormat
from conch.model.reasoning import StreamSplitter, markers
from conch.server import protocol as p
from conch.server.chat_parsing import ParsedOutput, ToolCallStream
from conch.server.http_errors import ApiError


def _bad(message: str, param: str = "messages") -> ApiError:
    return ApiError(400, message, param=param)


def wants_tools(body: p.ChatCompletionRequest) -> bool:
    """Whether the request needs the tool format: tools offered, or tool turns in the conversation."""
    offered = bool(body.tools) and body.tool_choice != "none"
    return offered or any(m.role == "tool" or m.tool_calls for m in body.messages)


def _call_content(message: p.ChatMessage, index: int, words: tuple[str, str]) -> str:
    """An assistant's tool calls as LLaMA-Factory's function turn: JSON {name, arguments}, text before it."""
    calls = []
    for j, call in enumerate(message.tool_calls):
        try:
            arguments = json.loads(call.function.arguments)
        except json.JSONDecodeError as exc:
            raise _bad(
                f"messages[{index}].tool_calls[{j}].function.arguments is not JSON ({exc.msg}, "
                f"character {exc.pos})"
            ) from None
        calls.append({"name": call.function.name, "arguments": arguments})
    text = json.dumps(calls[0] if len(calls) == 1 else calls, ensure_ascii=False)
    said = message.text().strip()
    # LLaMA-Factory keeps text written before a call when the call sits between its tool-call words.
    return f"{said}{words[0]}{text}{words[1]}" if said else text


def trained_conversation(
    body: p.ChatCompletionRequest, words: tuple[str, str]
) -> tuple[list[dict], str | None]:
    """(messages in LLaMA-Factory's roles, system): consecutive tool results become one observation turn;
    turns must alternate user/observation then assistant/function, as in training, ending before an answer."""
    system, turns = None, []
    for i, m in enumerate(body.messages):
        if m.role == "system":
            if i:
                raise _bad(f"messages[{i}] is a system message; only the first message may be one")
            system = m.text()
        elif m.role == "tool" and turns and turns[-1]["role"] == "observation":
            turns[-1]["content"] += "\n" + m.text()
        else:
            role = {"user": "user", "tool": "observation"}.get(m.role)
            role = role or ("function" if m.tool_calls else "assistant")
            content = _call_content(m, i, words) if role == "function" else m.text()
            turns.append({"role": role, "content": content})
    for n, turn in enumerate(turns):
        expected = ("user", "observation") if n % 2 == 0 else ("assistant", "function")
        if turn["role"] not in expected:
            raise _bad(
                "with tools, turns must alternate user (or tool results) and assistant (or tool calls), "
                f"starting with user; turn {n + 1} is {turn['role']}"
            )
    if not turns or len(turns) % 2 == 0:
        raise _bad("the conversation must end with a user message or tool results, for the model to answer")
    return turns, system


class TemplateChat:
    """Per served model: its trained format (built once, in the background) and reasoning markers."""

    def __init__(self, settings):
        self.entries = {m.name: m for m in settings.models}
        self.formats: dict[str, TrainedFormat] = {}
        self._lock = threading.Lock()

    def warm(self, engines: dict) -> None:
        """Build every templated model's format now (importing LLaMA-Factory takes seconds): the loader
        thread calls this, so the first tool request does not wait."""
        for name, engine in engines.items():
            if self.entries[name].template:
                self.format(engine)

    def format(self, engine) -> TrainedFormat:
        with self._lock:
            if engine.name not in self.formats:
                entry = self.entries[engine.name]
                self.formats[engine.name] = TrainedFormat(
                    engine.tokenizer, entry.template, entry.default_system, entry.tool_format
                )
            return self.formats[engine.name]

    def template(self, engine) -> str | None:
        return self.entries[engine.name].template

    async def prompt(self, serving, engine, body: p.ChatCompletionRequest):
        """(prompt ids, token budget, forced answer start) for a tool request; None for any other."""
        if not wants_tools(body):
            return None
        if not self.template(engine):
            raise _bad(
                f"model {engine.name!r} was started without its LLaMA-Factory template, which tools need "
                "(to write them as in training): start it with --template NAME (the config's `template`)",
                "tools" if body.tools else "messages",
            )
        fmt = await asyncio.to_thread(self.format, engine)
        messages, system = trained_conversation(body, fmt.template.tool_call_words)
        offered = [t.function.as_trained() for t in body.tools or []] if body.tool_choice != "none" else []
        prefix = self._forced(fmt, body) if offered else None
        try:
            ids = await asyncio.to_thread(fmt.prompt_ids, messages, system, offered)
        except FormatError as exc:
            raise _bad(str(exc), "tools") from exc
        if prefix:
            ids = ids + prefix.ids
        ids, budget = serving.check_prompt(engine, ids, body.requested_tokens(), "messages")
        return ids, budget, prefix.text if prefix else ""

    @staticmethod
    def _forced(fmt: TrainedFormat, body: p.ChatCompletionRequest):
        choice = body.tool_choice
        if choice is None or choice == "auto":
            return None
        name = None if choice == "required" else choice.function.name
        prefix = fmt.call_prefix(name)
        if prefix is None:
            raise _bad(
                f"tool_choice {choice if isinstance(choice, str) else 'naming a function'} cannot be honoured "
                f"with the {fmt.name!r} template: its calls start with no marker to begin the answer with",
                "tool_choice",
            )
        return prefix

    def output(self, engine, body: p.ChatRequest, forced: str = "") -> ParsedOutput | None:
        """The parser of this request's answer; None when the text is the content as is."""
        template = self.template(engine)
        if not template:
            return None
        thought = markers(template)
        tools = None
        # Only /v1/chat/completions takes tools; the RAG chat's answers may still carry reasoning.
        if isinstance(body, p.ChatCompletionRequest) and body.tools and body.tool_choice != "none":
            names = {t.function.name for t in body.tools}
            single = body.parallel_tool_calls is False
            tools = ToolCallStream(self.format(engine), names, single)
        if thought is None and tools is None:
            return None
        output = ParsedOutput(StreamSplitter(*thought) if thought else None, tools)
        output.delta(forced)  # the answer's forced start, parsed as if generated (it holds no content)
        return output
