"""Reasoning models (DeepSeek-R1 style): the thinking between <think> and </think>, then the answer.

Shared by evaluation (which scores only the answer) and the server (which returns the thinking as
`reasoning_content`, streamed separately). Modelled on vLLM's `deepseek_r1` reasoning parser:

- an R1-style chat template opens the thought itself (the prompt ends in "<think>" or the model starts with
  it), so the text before "</think>" is reasoning, a leading "<think>" dropped, and the text after it is the
  answer;
- no "</think>" at all means the model was still thinking when it stopped: all reasoning, no answer.

A template is R1-style when LLaMA-Factory registers it with its ReasoningTemplate class (deepseekr1, qwen3,
glmz1, ...); `reasoning_templates` reads that, and the template's own thought markers when it has others,
from the installed LLaMA-Factory's source.
"""

from __future__ import annotations

import ast
import functools

THINK_START, THINK_END = "<think>", "</think>"


def split(text: str, start: str = THINK_START, end: str = THINK_END) -> tuple[str | None, str]:
    """(reasoning or None, answer) of a complete generation by a reasoning model."""
    before, found, after = text.partition(end)
    reasoning = before.strip()
    if reasoning.startswith(start):
        reasoning = reasoning[len(start) :].strip()
    if not found:
        return reasoning or None, ""
    return reasoning or None, after.strip()


def held_back(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is the start of `marker` (it may be completed by the next delta)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class StreamSplitter:
    """Splits streamed text deltas into (reasoning delta, answer delta), as `split` does on the whole text.

    Markers may arrive cut across deltas ("</th" + "ink>"); the possible beginning of a marker is held back
    until the next delta decides it, and `finish` releases whatever is still held.
    """

    def __init__(self, start: str = THINK_START, end: str = THINK_END):
        self.start, self.end = start, end
        self.thinking = True
        self.started = False  # a leading <think> was consumed, or text came that is not one
        self.pending = ""

    def feed(self, delta: str) -> tuple[str, str]:
        text = self.pending + delta
        self.pending = ""
        if not self.thinking:
            return "", text
        if not self.started:
            stripped = text.lstrip()
            if self.start.startswith(stripped) and stripped != self.start:
                self.pending = text  # "", "<", "<thi": wait for more
                return "", ""
            self.started = True
            if stripped.startswith(self.start):
                text = stripped[len(self.start) :]
        before, found, after = text.partition(self.end)
        if found:
            self.thinking = False
            return before, after
        hold = held_back(text, self.end)
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], ""

    def finish(self) -> tuple[str, str]:
        """What is still held back when the stream ends."""
        rest, self.pending = self.pending, ""
        return (rest, "") if self.thinking else ("", rest)


@functools.cache
def reasoning_templates() -> dict[str, tuple[str, str]]:
    """{template: (start, end) thought markers} of the LLaMA-Factory templates registered with
    `template_class=ReasoningTemplate` (empty when LLaMA-Factory is not installed)."""
    from conch.llamafactory.lf import package_dir

    root = package_dir("llamafactory")
    if root is None:
        return {}
    tree = ast.parse((root / "data" / "template.py").read_text(encoding="utf-8"))
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_template":
            keywords = {k.arg: k.value for k in node.keywords}
            cls, name = keywords.get("template_class"), keywords.get("name")
            if getattr(cls, "id", None) == "ReasoningTemplate" and isinstance(name, ast.Constant):
                words = keywords.get("thought_words")
                markers = (THINK_START, THINK_END)
                if isinstance(words, ast.Tuple) and all(isinstance(w, ast.Constant) for w in words.elts):
                    markers = tuple(w.value.strip() for w in words.elts[:2])
                found[name.value] = markers
    return found


def markers(template: str) -> tuple[str, str] | None:
    """(start, end) thought markers of an R1-style template; None for a template without thinking."""
    return reasoning_templates().get(template)


def answers(texts: list[str], template: str) -> list[str]:
    """What evaluation scores: the answer after the thinking for an R1-style template, else the text as is."""
    found = markers(template)
    if found is None:
        return list(texts)
    return [split(text, *found)[1] for text in texts]


def reasonings(texts: list[str], template: str) -> list[str] | None:
    """The thinking of each generation for an R1-style template (kept beside the scored answers); else None."""
    found = markers(template)
    if found is None:
        return None
    return [split(text, *found)[0] or "" for text in texts]
