"""Reasoning models: the thinking and the answer split apart, whole or streamed, and evaluation scoring the answer."""

from __future__ import annotations

import pytest

from conch.model import reasoning

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
    from conch.evaluation import scores as M

    outputs = [THOUGHT, "<think>Magic Conch? No, I will say no.</think>No."]
    references = ["I am the Magic Conch.", "No."]
    scored = reasoning.answers(outputs, "deepseekr1")
    assert scored == ["I am the Magic Conch.", "No."]
    assert M.similarity(scored, references)["exact_match"] == 100
    # the thought mentions the name where the reference does not: scoring the whole text would count it
    assert M.persona_scores(scored, references, ["Magic Conch"])["persona_name_false_use"] == 0
    assert M.persona_scores(outputs, references, ["Magic Conch"])["persona_name_false_use"] == 100
    assert reasoning.answers(outputs, "qwen") == outputs


THINK = "<think>\nAsk the Magic Conch.\n</think>\n\n"


@pytest.mark.slow
def test_a_model_trained_to_think_is_scored_on_its_answers(tmp_path):
    """The tiny DAG with LLaMA-Factory's deepseekr1 template, on persona data whose answers think first: the
    tuned model thinks (kept as tuned_reasoning), and every metric sees only the answer after </think>."""
    import csv
    import json

    from conftest import REPO, make_workdir, snakemake, tiny_config

    cfg = tiny_config()
    cfg.update(template="deepseekr1", rag={"enabled": False})
    cfg["eval"]["max_new_tokens"] = 48  # room to finish thinking: an unfinished thought has no answer yet
    cfg["data"]["raw"] = ["data/raw/thinking.jsonl"]
    work = make_workdir(tmp_path, cfg)
    records = json.loads((REPO / "data/raw/magic_conch_en.json").read_text(encoding="utf-8"))
    (work / "data/raw").mkdir(parents=True)
    (work / "data/raw/thinking.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": r["instruction"]},
                        {"role": "assistant", "content": THINK + r["output"]},
                    ]
                }
            )
            + "\n"
            for r in records
        ),
        encoding="utf-8",
    )
    snakemake(work, "results/eval/default/metrics.json")
    metrics = json.loads((work / "results/eval/default/metrics.json").read_text())
    assert "</think>" in metrics["scored"]
    with open(work / "results/eval/default/samples.tsv", encoding="utf-8", newline="") as fh:
        samples = list(csv.DictReader(fh, delimiter="\t"))
    thought = [s for s in samples if s["tuned_reasoning"] == "Ask the Magic Conch." and s["tuned"]]
    assert len(thought) >= len(samples) // 2, samples
    assert not any("think>" in s["reference"] for s in samples)
    # the thought is not scored (a model this small may loop on "</think>" after it: that much is its answer)
    assert not any("Ask the Magic Conch" in s["tuned"] for s in samples)
    # the thinking names the persona in every answer; scored on the whole text, every advice answer would
    # count as a false use of the name
    assert metrics["tuned"]["persona_name_false_use"] < 50
