"""OpenAI's tool-calling request fields: `tools`, `tool_choice`, assistant `tool_calls`, `tool` messages.

Strict like the rest of the protocol (unknown fields are a 422 naming them). The fields an OpenAI client
copies back from a response message (`refusal`, `annotations`, `audio`, `function_call`,
`reasoning_content`) are accepted on assistant messages and ignored, so `messages.append(message)` works.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

# OpenAI's rule for function names; LLaMA-Factory's default tool parser reads names of this shape.
FunctionName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionDefinition(_Strict):
    name: FunctionName
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None

    def as_trained(self) -> dict:
        """The tool as LLaMA-Factory's `tools` column holds it: name, description, JSON-schema parameters.

        No parameters means none: OpenAI's reading, and LLaMA-Factory's default format needs `properties`.
        """
        parameters = self.parameters if self.parameters is not None else {"type": "object", "properties": {}}
        if "properties" not in parameters:
            parameters = {**parameters, "properties": {}}
        tool = {"name": self.name}
        if self.description is not None:
            tool["description"] = self.description
        tool["parameters"] = parameters
        return tool


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class _Named(_Strict):
    name: StrictStr


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: _Named


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class CalledFunction(_Strict):
    name: StrictStr
    arguments: StrictStr  # JSON text, as OpenAI sends it


class AssistantToolCall(_Strict):
    id: StrictStr
    type: Literal["function"] = "function"
    function: CalledFunction


class ToolMessageFields(_Strict):
    """Mixed into ChatMessage: what tool turns and copied-back assistant messages carry."""

    tool_calls: list[AssistantToolCall] | None = None
    tool_call_id: StrictStr | None = None
    name: StrictStr | None = None
    reasoning_content: StrictStr | None = None
    refusal: None = None
    annotations: list | None = None
    audio: None = None
    function_call: None = None

    @staticmethod
    def default_content(data):
        """An assistant message that only calls tools may leave out `content` (OpenAI's rule)."""
        if isinstance(data, dict) and data.get("role") == "assistant" and data.get("tool_calls"):
            return {"content": None, **data}
        return data

    def check_tool_fields(self) -> None:
        """Which role may carry which field (raised as a 422 naming it)."""
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.tool_call_id is not None and self.role != "tool":
            raise ValueError("only tool messages carry tool_call_id")
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content may be null only on an assistant message with tool_calls")


def check_tool_request(tools: list[Tool] | None, choice: ToolChoice | None) -> None:
    """tool_choice must fit tools; tool names must be unique (raised as a 422)."""
    names = [t.function.name for t in tools or []]
    if len(set(names)) != len(names):
        raise ValueError(
            f"tools: function names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}"
        )
    if choice is None or choice == "none":
        return
    if not names:
        raise ValueError("tool_choice needs tools: send the functions the model may call in `tools`")
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise ValueError(
            f"tool_choice names function {choice.function.name!r}, which is not in tools: {', '.join(names)}"
        )
