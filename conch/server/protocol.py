"""OpenAI request schemas (the subset conch implements) and response bodies.

Fields are strictly typed ("5" is not an integer) and unknown fields are refused with a 422 naming them, so a
client never believes a setting took effect when it did not. OpenAI fields conch does not implement are accepted
only at their no-op values (e.g. completions' `echo: false`).
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

from conch.engine import JSON_OBJECT, SamplingParams, check_schema
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


class JsonSchemaFormat(_Strict):
    name: StrictStr | None = None
    description: StrictStr | None = None
    schema_: dict = Field(alias="schema")
    strict: StrictBool | None = None  # decoding always follows the schema strictly

    @field_validator("schema_")
    @classmethod
    def _usable(cls, v):
        check_schema(v)
        return v


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @field_validator("json_schema")
    @classmethod
    def _with_json_schema_only(cls, v, info):
        if v is not None and info.data.get("type") != "json_schema":
            raise ValueError('goes with `type: "json_schema"` only')
        return v

    def schema_text(self) -> str | None:
        """The JSON schema decoding is constrained to, as JSON text (None: unconstrained)."""
        if self.type == "json_object":
            return JSON_OBJECT
        if self.type == "json_schema":
            if self.json_schema is None:
                raise ValueError("`json_schema` is required with type json_schema")
            return check_schema(self.json_schema.schema_)
        return None


Penalty = Annotated[Number, Field(ge=-2, le=2)]
# float32's smallest normal number: a repetition penalty below it underflows in the engine's float32 logits
# (to a subnormal or 0), and dividing a score by it gives infinities for the whole row (and, today, the batch).
SMALLEST_PENALTY = 1.1754943508222875e-38


class _Sampling(_Strict):
    model: StrictStr | None = None
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    # What torch.Generator.manual_seed accepts.
    seed: Annotated[StrictInt, Field(ge=-(2**63), le=2**64 - 1)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] = 1
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: StrictStr | None = None
    presence_penalty: Penalty = 0
    frequency_penalty: Penalty = 0
    # vLLM's extra parameter: 1 is none, above 1 discourages tokens already in the prompt or the answer.
    repetition_penalty: Annotated[Number, Field(gt=0, le=10)] = 1
    response_format: ResponseFormat | None = None

    @field_validator("response_format")
    @classmethod
    def _schema_given(cls, v):
        if v is not None:
            v.schema_text()  # a json_schema type without its schema is refused here, naming the field
        return v

    @field_validator("repetition_penalty")
    @classmethod
    def _representable(cls, v):
        if v is not None and 0 < v < SMALLEST_PENALTY:
            raise ValueError(
                f"{v} underflows float32, the logits' type (its smallest normal number is 1.2e-38); "
                "a penalty this small would make every score infinite"
            )
        return v

    @field_validator("stop")
    @classmethod
    def _stops_nonempty(cls, v):
        if v is not None and any(s == "" for s in ([v] if isinstance(v, str) else v)):
            raise ValueError("stop strings must not be empty")
        return v

    def logprob_count(self) -> int | None:
        """How many alternatives per token to report log-probabilities for (None: no logprobs)."""
        return None

    def sampling(self, choice: int = 0) -> SamplingParams:
        """Choice `choice`'s parameters: with a seed, each of the n choices draws from seed + its index."""
        stop = () if self.stop is None else (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        seed = None if self.seed is None else (self.seed + choice + 2**63) % 2**64 - 2**63
        return SamplingParams(
            float(self.temperature),
            float(self.top_p),
            stop,
            seed,
            float(self.presence_penalty),
            float(self.frequency_penalty),
            float(self.repetition_penalty),
            self.logprob_count(),
            self.response_format.schema_text() if self.response_format else None,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    """What every chat endpoint takes: the conversation, and chat's spellings of the token budget and logprobs.
    Each endpoint's request adds its own fields; a field one of them lacks is refused, naming it."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    # Newer OpenAI clients send this name for chat; it means the same as max_tokens.
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, v, info):
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs `logprobs: true`")
        return v

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class ChatCompletionRequest(ChatRequest):
    """/v1/chat/completions: the chat, plus tools (conch.server.protocol_tools; rendered and parsed in
    conch.server.tool_chat)."""

    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None

    @model_validator(mode="after")
    def _tool_choice_fits(self):
        check_tool_request(self.tools, self.tool_choice)
        return self


class RagChatCompletionRequest(ChatRequest):
    """/v1/rag/chat/completions: the chat answered from the knowledge base, plus how many chunks to retrieve
    (default: the index's `top_k`). No tools: the knowledge-base answer does not render them."""

    top_k: Annotated[StrictInt, Field(ge=1, le=100)] | None = None


class RagQueryRequest(_Strict):
    question: Annotated[StrictStr, Field(min_length=1)]
    top_k: Annotated[StrictInt, Field(ge=1, le=100)] | None = None
    similarity_threshold: Annotated[Number, Field(ge=-1, le=1)] | None = None


class CompletionRequest(_Sampling):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=1)]
    echo: StrictBool = False
    logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v):
        return _must_be(v, {False}, "echo is not supported")

    def logprob_count(self) -> int | None:
        return self.logprobs

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


def chat_choice(index: int, message: dict, finish_reason: str, logprobs: dict | None = None) -> dict:
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}


def chat_body(rid: str, model: str, choices: list[dict], use: dict) -> dict:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": use,
    }


def chat_chunk(
    rid: str,
    model: str,
    delta: dict,
    finish_reason: str | None = None,
    index: int = 0,
    logprobs: dict | None = None,
) -> dict:
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}],
    }


def completion_choice(index: int, text: str, finish_reason: str | None, logprobs: dict | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def completion_body(rid: str, model: str, choices: list[dict], use: dict | None, chunk: bool = False) -> dict:
    body = {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
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
