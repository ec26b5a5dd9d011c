"""The retention evaluation: its scoring, its bundled questions, and that the training mix does not teach them."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from conch.evaluation import retention as R

QUESTIONS = REPO / "data" / "retention" / "general_qa.jsonl"
SMOLLM2_CONFIG = REPO / "config" / "smollm2-135m.yaml"


@pytest.mark.parametrize(
    ("answer", "reference", "found"),
    [
        ("The capital of France is Paris.", "Paris", True),
        ("ＰＡＲＩＳ！", "paris", True),  # full-width letters fold to ASCII
        ("It has 16 legs.", "6", False),  # whole numbers only
        ("Water freezes at -18.0°C.", "0", False),  # a decimal stays one number
        ("It freezes at 0 °C.", "0", True),
        ("The answer is 1,000.", "1000", True),
        ("1，3，5，7，9", "9", True),  # full-width commas between single digits are separators
        ("The French word chat", "cat", False),
        ("法国的首都是巴黎。", "巴黎", True),
        ("Good morning is guten   Morgen!", "guten morgen", True),
        ("Maybe someday.", "Tuesday", False),
    ],
)
def test_reference_contained_match(answer, reference, found):
    assert R.contains(answer, reference) is found


def test_bundled_questions_cover_both_languages_and_every_category():
    questions = R.load_questions(QUESTIONS)
    assert len(questions) >= 40
    for lang in ("en", "zh"):
        mine = [q for q in questions if q["lang"] == lang]
        assert len(mine) >= 20 and {q["category"] for q in mine} == set(R.CATEGORIES), lang


def test_scores_and_the_share_kept():
    questions = [
        {"id": "a", "lang": "en", "category": "facts", "question": "Capital of Japan?", "answers": ["Tokyo"]},
        {"id": "b", "lang": "zh", "category": "arithmetic", "question": "三加五？", "answers": ["8", "八"]},
    ]
    base = R.summary(questions, R.score(questions, ["Tokyo.", "等于八"]))
    tuned = R.summary(questions, R.score(questions, ["Kyoto.", "等于八"]))
    assert (base["score"], tuned["score"]) == (100.0, 50.0)
    assert tuned["by_lang"] == {"en": 0.0, "zh": 100.0}
    assert R.kept(base, tuned) == 0.5
    assert R.kept_answers([True, True, False], [True, False, True]) == 0.5  # a gain does not hide a loss
    assert R.kept(tuned | {"score": 0.0}, base) is None


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"question": "Say yes", "category": "facts", "answers": ["Yes"]}, "yes/no"),
        ({"question": "Is Paris big?", "category": "facts", "answers": ["Paris"]}, "occurs in the question"),
        ({"question": "Q?", "category": "trivia", "answers": ["x"]}, "'category'"),
        ({"question": "Q?", "category": "facts", "answers": []}, "'answers'"),
    ],
)
def test_questions_that_would_score_for_free_are_refused(tmp_path, record, problem):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=problem) as err:
        R.load_questions(path)
    assert "line 1" in str(err.value)


def training_records(config: dict) -> list[tuple[str, str]]:
    """(prompt, answer) of every record the config trains on, as the data pipeline reads them."""
    from conch.data.readers import read_file
    from conch.data.records import normalise

    pairs = []
    for raw in config["data"]["raw"]:
        for item in read_file(str(REPO / raw)).items:
            messages = normalise(item.value)["messages"]
            prompt = " ".join(m["content"] for m in messages[:-1])
            pairs.append((prompt, messages[-1]["content"]))
    return pairs


def test_the_training_mix_does_not_teach_the_retention_questions():
    import yaml

    config = yaml.safe_load(SMOLLM2_CONFIG.read_text(encoding="utf-8"))
    pairs = training_records(config)
    assert len(pairs) > 300
    questions = R.load_questions(QUESTIONS)
    leaking = [(q["id"], p[:80]) for q in questions for p, a in pairs if R.leaks(q, p, a)]
    assert leaking == []


def test_leak_check_catches_a_record_that_answers_a_question():
    question = R.load_questions(QUESTIONS)[0]  # the capital of France
    assert R.leaks(question, "Name the capital city of France.", "Paris is the capital.")
    assert not R.leaks(question, "Name a city in France.", "Lyon.")
