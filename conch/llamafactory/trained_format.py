"""The prompt format a model was fine-tuned in, for what its Jinja chat template cannot say: tools.

Ordinary chats are rendered by the Jinja chat template LLaMA-Factory writes into the tokenizer. That template
knows system, user and assistant turns only. LLaMA-Factory trains tool records with its `Template` instead:
the tool list goes into the system prompt through `format_tools`, a call through `format_function`, a
result through `format_observation`. So a tool conversation is encoded here with that same Template, as
LLaMA-Factory's own chat engine encodes it (`encode_oneturn` with an empty answer), and the model's answer
is parsed with the Template's `extract_tool`. Training and serving then agree on the format by construction.

Messages use LLaMA-Factory's roles: user, assistant, function (a call, its content the JSON
`{"name", "arguments"}` or a list of them), observation (a call's result).
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass

# get_template_and_fix_tokenizer sets options on LLaMA-Factory's shared Template object; one at a time.
_REGISTRY_LOCK = threading.Lock()
# A function name no tool has, to see how the format writes a call.
_PROBE = "conch_probe_fn"


class FormatError(ValueError):
    """The conversation or tools cannot be written in this format (e.g. a tool without parameters)."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, as text


@dataclass(frozen=True)
class Prefix:
    """Forced start of the answer: its token ids (appended to the prompt) and their text."""

    ids: list[int]
    text: str


def tool_prompt(template: str, tools: str) -> str:
    """The text LLaMA-Factory's `template` adds to the system prompt for a record's `tools` (JSON text)."""
    from llamafactory.data.template import TEMPLATES

    return TEMPLATES[template].format_tools.apply(content=tools)[0]


def load_template(
    tokenizer, template: str, default_system: str | None = None, tool_format: str | None = None
):
    """(LLaMA-Factory Template, the tokenizer it fixed) exactly as training set them up, without touching
    `tokenizer` or LLaMA-Factory's registry."""
    from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    if template not in TEMPLATES:
        raise FormatError(f"{template!r} is not a LLaMA-Factory template")
    fixed = copy.deepcopy(tokenizer)
    args = DataArguments(template=template, default_system=default_system, tool_format=tool_format)
    with _REGISTRY_LOCK:
        shared = TEMPLATES[template]
        TEMPLATES[template] = copy.deepcopy(shared)
        try:
            found = get_template_and_fix_tokenizer(fixed, args)
        finally:
            TEMPLATES[template] = shared
    return found, fixed


class TrainedFormat:
    def __init__(self, tokenizer, template: str, default_system: str | None = None, tool_format=None):
        self.name = template
        self.template, self.tokenizer = load_template(tokenizer, template, default_system, tool_format)
        before = self._decode(self._ids(self._cut(_PROBE, through_name=False))).strip()
        # What a call starts with in this format as the client sees the text (special tokens dropped):
        # "<tool_call>", "Action:", '{"name":'; "" when the answer is nothing but the call (then all of it
        # waits for the end).
        self.call_start = before.split()[0] if before else ""

    def prompt_ids(self, messages: list[dict], system: str | None = None, tools: list[dict] | None = None):
        """Token ids of the prompt for the next answer, as LLaMA-Factory's chat engine builds them."""
        tools_text = json.dumps(tools, ensure_ascii=False) if tools else None
        try:
            prompt, _ = self.template.encode_oneturn(
                self.tokenizer, [*messages, {"role": "assistant", "content": ""}], system, tools_text
            )
        except (KeyError, TypeError, AttributeError, RuntimeError, json.JSONDecodeError) as exc:
            raise FormatError(
                f"LLaMA-Factory's {self.name!r} template cannot render this: {type(exc).__name__}: {exc}"
            ) from exc
        return prompt

    def call_prefix(self, name: str | None) -> Prefix | None:
        """The forced start of an answer that calls `name` (or, for None, some tool): None where the format
        gives nothing to force (the answer is the bare call)."""
        elements = self._cut(name or _PROBE, through_name=name is not None)
        if name is None:  # stop before the name, and before a space the name's token would carry
            elements[-1] = elements[-1].rstrip()
        ids = self._ids(elements)
        if not self._decode(ids).strip():
            return None
        if self._answers_think():  # trained answers start with an empty thought, then the call
            ids = self.template.get_thought_word_ids(self.tokenizer) + ids
        return Prefix(ids, self._decode(ids))

    def extract(self, text: str) -> list[ToolCall] | None:
        """The calls in an answer, with JSON-object arguments; None if it is not (wholly) tool calls."""
        try:
            found = self.template.extract_tool(text)
        except Exception:  # an extractor choking on odd text means the same as finding nothing
            return None
        if isinstance(found, str) or not found:
            return None
        calls = []
        for name, arguments in found:
            try:
                parsed = json.loads(arguments)
            except (TypeError, json.JSONDecodeError):
                return None
            if not isinstance(parsed, dict):
                return None
            calls.append(ToolCall(name, json.dumps(parsed, ensure_ascii=False)))
        return calls

    def _answers_think(self) -> bool:
        """A reasoning template with thinking on: training put an (empty) thought at each answer's start."""
        from llamafactory.data.template import ReasoningTemplate

        return isinstance(self.template, ReasoningTemplate) and bool(self.template.enable_thinking)

    def _cut(self, name: str, through_name: bool) -> list:
        """The call's elements for function `name`, up to the name (or through it)."""
        elements = self.template.format_function.apply(
            content=json.dumps({"name": name, "arguments": {}}),
            thought_words=self.template.thought_words,
            tool_call_words=self.template.tool_call_words,
        )
        for i, element in enumerate(elements):
            if isinstance(element, str) and name in element:
                at = element.index(name) + (len(name) if through_name else 0)
                return [*elements[:i], element[:at]]
        raise FormatError(f"the {self.name!r} template writes no function name in a call")

    def _ids(self, elements: list) -> list[int]:
        return self.template._convert_elements_to_ids(self.tokenizer, elements)

    def _decode(self, ids: list[int]) -> str:
        """Text as the client gets it from the engine: special tokens dropped."""
        return self.tokenizer.decode(ids, skip_special_tokens=True)
