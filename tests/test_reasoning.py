"""Reasoning models: the thinking and the answer split apart, whole or streamed, and evaluation scoring the answer."""

from __future__ import annotations

import pytest

from conch import reasoning

THOUGHT = "<think>\nThe user asks who I am. I am the conch.\n</think>\n\nI am the Magic Conch."


def test_split_a_whole_generation():
    assert reasoning.split(THOUGHT) == ("The user asks who I am. I am the conch.", "I am the Magic Conch.")
    # R1's template opens <think> in the prompt: the generation starts inside the thought
    assert reasoning.split("just thinking</think>Yes.") == ("just thinking", "Yes.")
    # stopped while thinking: no answer yet
    assert reasoning.split("<think>still going") == ("still going", "")
    assert reasoning.split("</think>Direct.") == (None, "Direct.")


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, len(THOUGHT)])
def test_streamed_deltas_give_the_same_split_wherever_they_are_cut(cut):
    splitter = reasoning.StreamSplitter()
    deltas = [THOUGHT[i : i + cut] for i in range(0, len(THOUGHT), cut)]
    parts = [splitter.feed(d) for d in deltas] + [splitter.finish()]
    thought = "".join(r for r, _ in parts)
    answer = "".join(a for _, a in parts)
    assert (thought.strip(), answer.strip()) == reasoning.split(THOUGHT)
    # nothing of the markers leaks into either stream
    assert "<" not in thought and "think" not in answer


def test_a_lone_angle_bracket_is_released_at_the_end():
    splitter = reasoning.StreamSplitter()
    assert splitter.feed("a <") == ("a ", "")
    assert splitter.finish() == ("<", "")


def test_r1_style_templates_come_from_llamafactory():
    templates = reasoning.reasoning_templates()
    assert templates["deepseekr1"] == ("<think>", "</think>")
    assert "qwen3" in templates and "qwen" not in templates and "smollm2" not in templates
    assert templates["seed_oss"] == ("<seed:think>", "</seed:think>")  # a template's own markers


def test_evaluation_scores_the_answer_after_the_thinking():
    """What evaluate.py scores: with deepseekr1 the answer only; with a plain template the text as it is."""
    from conch import metrics as M

    outputs = [THOUGHT, "<think>Magic Conch? No, I will say no.</think>No."]
    references = ["I am the Magic Conch.", "No."]
    scored = reasoning.answers(outputs, "deepseekr1")
    assert scored == ["I am the Magic Conch.", "No."]
    assert M.similarity(scored, references)["exact_match"] == 100
    # the thought mentions the name where the reference does not: scoring the whole text would count it
    assert M.persona_scores(scored, references, ["Magic Conch"])["persona_name_false_use"] == 0
    assert M.persona_scores(outputs, references, ["Magic Conch"])["persona_name_false_use"] == 100
    assert reasoning.answers(outputs, "qwen") == outputs
