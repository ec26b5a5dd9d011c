"""OpenAI request schemas (the subset conch implements) and response bodies.

Fields are strictly typed ("5" is not an integer) and unknown fields are refused with a 422 naming them, so a
client never believes a setting took effect when it did not. OpenAI fields conch does not implement are accepted
only at their no-op values (e.g. `n: 1`, `presence_penalty: 0`).
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from conch.engine.sampling import SamplingParams
from conch.server.protocol_tools import Tool, ToolChoice, ToolMessageFields, check_tool_request

Number = StrictInt | StrictFloat
# Each step checks whether the answer's tail could begin a stop string: bounded, so no request slows the batch.
StopString = Annotated[StrictStr, Field(max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: StrictStr


class ChatMessage(ToolMessageFields):
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr | list[TextPart] | None

    _content_default = model_validator(mode="before")(ToolMessageFields.default_content)

    @model_validator(mode="after")
    def _tool_fields(self):
        self.check_tool_fields()
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Strict):
    include_usage: StrictBool = False


def _must_be(value, allowed, why: str):
    if value not in allowed:
        raise ValueError(why)
    return value


class _Sampling(_Strict):
    model: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    # What torch.Generator.manual_seed accepts.
    seed: Annotated[StrictInt, Field(ge=-(2**63), le=2**64 - 1)] | None = None
    n: StrictInt = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None
    presence_penalty: Number = 0
    frequency_penalty: Number = 0

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v):
        return _must_be(v, {1}, "only n=1 is supported; send several requests for several answers")

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v):
        return _must_be(v, {0}, "penalties are not supported; leave this at 0")

    @field_validator("stop")
    @classmethod
    def _stops_nonempty(cls, v):
        if v is not None and any(s == "" for s in ([v] if isinstance(v, str) else v)):
            raise ValueError("stop strings must not be empty")
        return v

    def sampling(self) -> SamplingParams:
        stop = () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        return SamplingParams(float(self.temperature), float(self.top_p), stop, self.seed)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    # Newer OpenAI clients send this name for chat; it means the same as max_tokens.
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    # conch.server.protocol_tools; rendered and parsed in conch.server.tool_chat.
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v):
        return _must_be(v, {None, False}, "logprobs are not supported")

    @model_validator(mode="after")
    def _tool_choice_fits(self):
        check_tool_request(self.tools, self.tool_choice)
        return self

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Sampling):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]
    echo: StrictBool = False
    logprobs: StrictInt | None = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v):
        return _must_be(v, {False}, "echo is not supported")

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v):
        return _must_be(v, {None}, "logprobs are not supported")

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def requested_tokens(self) -> int | None:
        return self.max_tokens


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_body(rid: str, model: str, message: dict, finish_reason: str, use: dict) -> dict:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": use,
    }


def chat_chunk(rid: str, model: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def completion_body(
    rid: str, model: str, text: str, finish_reason: str | None, use: dict | None, chunk: bool = False
) -> dict:
    body = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if use is not None or not chunk:
        body["usage"] = use
    return body


def usage_chunk(rid: str, model: str, obj: str, use: dict) -> dict:
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": use,
    }


def error_body(message: str, kind: str, param: str | None = None, code: int | str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
