"""Preference data: the three raw schemas, LLaMA-Factory's demo files, rejects with reasons, splits, registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DEMO

from conch.errors import DataError
from conch.preference.pairs import PREF_REASONS, context
from conch.preference.prepare import OUTPUT_FILES, prepare_preference, prompts

ROOT = Path(__file__).resolve().parents[1]
OURS = [
    ROOT / "data/raw/magic_conch_pref.jsonl",
    ROOT / "data/raw/magic_conch_pref_alpaca.json",
    ROOT / "data/raw/magic_conch_pref_kto.jsonl",
]

GOOD_SHAREGPT = {
    "conversations": [{"from": "human", "value": "Who are you?"}],
    "chosen": {"from": "gpt", "value": "I am the Magic Conch."},
    "rejected": {"from": "gpt", "value": "I am ChatGPT."},
}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def kept(result) -> list[dict]:
    return [r for split in result.pairs.values() for r in split]


def test_llamafactory_demo_files_are_accepted_as_they_are():
    files = [DEMO / "dpo_en_demo.json", DEMO / "dpo_zh_demo.json", DEMO / "kto_en_demo.json"]
    result = prepare_preference([str(f) for f in files], max_chars=10**6)
    s = result.stats
    assert s["read"] == 900
    # The demos hold a few exact repeats, and nothing else conch refuses.
    assert set(s["rejected_by_reason"]) <= {"duplicate"}
    assert (
        s["files"][str(DEMO / "kto_en_demo.json")]["kto"]
        == 300 - s["files"][str(DEMO / "kto_en_demo.json")]["rejected"]
    )
    pair = kept(result)[0]
    assert pair["chosen"]["role"] == pair["rejected"]["role"] == "assistant"
    assert pair["messages"][-1]["role"] == "user"
    # Multi-turn demo prompts keep their history; the pair's answers close them.
    assert any(len(p["messages"]) > 1 for p in kept(result))


def test_the_three_schemas_normalise_to_one_pair_shape(tmp_path):
    sharegpt = write_jsonl(tmp_path / "a.jsonl", [{**GOOD_SHAREGPT, "system": "Be brief."}])
    alpaca = tmp_path / "b.json"
    alpaca.write_text(
        json.dumps(
            [{"instruction": "Should I nap?", "input": "Today", "chosen": "Yes.", "rejected": "Well..."}]
        ),
        encoding="utf-8",
    )
    kto = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {
                "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yes."}],
                "label": True,
            },
            {"instruction": "Name?", "output": "Magic Conch.", "kto_tag": False},
        ],
    )
    result = prepare_preference([str(sharegpt), str(alpaca), str(kto)], val_fraction=0, test_fraction=0)
    pairs = {p["messages"][-1]["content"]: p for p in result.pairs["train"]}
    assert pairs["Who are you?"]["system"] == "Be brief."
    assert pairs["Who are you?"]["chosen"] == {"role": "assistant", "content": "I am the Magic Conch."}
    assert pairs["Should I nap?\nToday"]["rejected"]["content"] == "Well..."
    native = [r for r in result.kto["train"] if "-" not in r["id"]]
    assert sorted(r["kto_tag"] for r in native) == [False, True]
    # Every pair also gives KTO a desirable and an undesirable record.
    unpaired = [r for r in result.kto["train"] if "-" in r["id"]]
    assert len(unpaired) == 2 * len(result.pairs["train"])
    assert {r["kto_tag"] for r in unpaired if r["messages"][-1]["content"] == "I am ChatGPT."} == {False}
    assert result.stats["kto_splits"]["train"] == {"desirable": 3, "undesirable": 3}


# (record, reason, fragment of the detail)
BAD = [
    (
        {"conversations": GOOD_SHAREGPT["conversations"], "chosen": GOOD_SHAREGPT["chosen"]},
        "missing_side",
        "rejected is absent",
    ),
    ({**GOOD_SHAREGPT, "rejected": None}, "missing_side", "rejected is null"),
    (
        {**GOOD_SHAREGPT, "rejected": {"from": "gpt", "value": "  "}},
        "empty_side",
        "rejected.value is whitespace only",
    ),
    ({**GOOD_SHAREGPT, "chosen": ""}, "empty_side", "chosen is empty"),
    (
        {**GOOD_SHAREGPT, "rejected": {"from": "gpt", "value": "i am the  MAGIC conch."}},
        "identical_sides",
        "both",
    ),
    (
        {**GOOD_SHAREGPT, "rejected": {"from": "human", "value": "No."}},
        "unknown_role",
        "rejected.from is 'human'",
    ),
    ({**GOOD_SHAREGPT, "chosen": 3}, "wrong_type", "chosen: expected a string"),
    ({"chosen": "Yes.", "rejected": "No."}, "missing_prompt", "no conversations, messages or instruction"),
    ({"instruction": " ", "chosen": "Yes.", "rejected": "No."}, "missing_prompt", "instruction is empty"),
    ({**GOOD_SHAREGPT, "conversations": []}, "missing_prompt", "conversations is an empty list"),
    # Malformed conversations: the SFT checks, as reasons of their own.
    ({**GOOD_SHAREGPT, "conversations": "Who are you?"}, "wrong_type", "conversations: expected a list"),
    (
        {**GOOD_SHAREGPT, "conversations": ["Who are you?"]},
        "wrong_type",
        "conversations[0]: expected an object",
    ),
    ({**GOOD_SHAREGPT, "conversations": [{"from": "robot", "value": "Hi"}]}, "unknown_role", "'robot'"),
    ({**GOOD_SHAREGPT, "conversations": [{"from": "human"}]}, "missing_field", "conversations[0].value"),
    (
        {
            **GOOD_SHAREGPT,
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yes."}],
        },
        "wrong_role_order",
        "the prompt ends with the user turn",
    ),
    (
        {
            **GOOD_SHAREGPT,
            "conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}],
        },
        "wrong_role_order",
        "expected assistant",
    ),
    (
        {
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}],
            "label": "yes",
        },
        "bad_kto_tag",
        "use true or false",
    ),
    (
        {"messages": [{"role": "user", "content": "Hi"}], "kto_tag": True},
        "wrong_role_order",
        "last turn must be assistant",
    ),
    ({"instruction": "Hi", "output": "Hello"}, "unknown_schema", "looks like an SFT record"),
    (["not", "an", "object"], "not_an_object", "got list"),
]


@pytest.mark.parametrize(
    ("record", "reason", "fragment"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)]
)
def test_bad_records_are_rejected_with_their_reason(tmp_path, record, reason, fragment):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD_SHAREGPT, record])
    result = prepare_preference([str(path)])
    assert len(kept(result)) == 1 and result.stats["rejected"] == 1
    (reject,) = result.rejects
    assert reject["reason"] == reason and reason in PREF_REASONS
    assert fragment in reject["detail"]
    assert reject["file"] == str(path) and reject["line"] == 2
    assert json.loads(reject["raw"]) == record


def test_broken_json_line_and_duplicates_are_rejected_not_fatal(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        json.dumps(GOOD_SHAREGPT) + "\n{not json\n" + json.dumps(GOOD_SHAREGPT).replace("Who", "who") + "\n",
        encoding="utf-8",
    )
    result = prepare_preference([str(path)])
    assert result.stats["rejected_by_reason"] == {"duplicate": 1, "malformed_json": 1}
    assert "same as" in next(r for r in result.rejects if r["reason"] == "duplicate")["detail"]


def test_nothing_usable_fails_with_the_evidence(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{**GOOD_SHAREGPT, "rejected": GOOD_SHAREGPT["chosen"]}])
    with pytest.raises(DataError, match=r"no usable preference records.*identical_sides.*pairs.jsonl:1"):
        prepare_preference([str(path)])


def test_all_answers_to_a_prompt_share_its_split():
    result = prepare_preference([str(f) for f in OURS])
    where = {}
    for split, rows in result.pairs.items():
        for row in rows:
            key = json.dumps(context(row))
            assert where.setdefault(key, split) == split
    for split, rows in result.kto.items():
        for row in rows:
            key = json.dumps(context(row))
            assert where.setdefault(key, split) == split
    assert all(result.stats["splits"][s] > 0 for s in ("train", "val", "test"))


def test_written_files_are_registered_for_llamafactory(tmp_path):
    result = prepare_preference([str(f) for f in OURS])
    paths = result.write(tmp_path, "conch_pref")
    assert set(paths) == set(OUTPUT_FILES) and all(p.exists() for p in paths.values())
    info = json.loads(paths["dataset_info"].read_text(encoding="utf-8"))
    assert info["conch_pref_train"]["ranking"] is True
    assert info["conch_pref_train"]["columns"]["chosen"] == "chosen"
    assert info["conch_pref_kto_train"]["columns"]["kto_tag"] == "kto_tag"
    assert "ranking" not in info["conch_pref_kto_train"]
    for entry in info.values():
        assert (tmp_path / entry["file_name"]).exists()
    stats = json.loads(paths["stats"].read_text(encoding="utf-8"))
    assert stats["read"] == stats["kept"] + stats["rejected"] == 146


def test_ppo_prompts_are_distinct_and_end_with_the_user():
    result = prepare_preference([str(f) for f in OURS])
    found = prompts(result.pairs["train"] + result.kto["train"])
    assert len({json.dumps(p) for p in found}) == len(found)
    assert all(p[-1]["role"] == "user" for p in found)
    # Pairs unpaired for KTO share their prompt with the pair: counted once.
    assert len(found) < len(result.pairs["train"]) + len(result.kto["train"])


def test_alpaca_pairs_in_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "instruction,input,chosen,rejected\n"
        '"Who are you?",,I am the Magic Conch.,I am ChatGPT.\n'
        "Should I nap?,Today,Yes.,\n",
        encoding="utf-8",
    )
    result = prepare_preference([str(path)], val_fraction=0, test_fraction=0)
    (pair,) = result.pairs["train"]
    assert pair["chosen"]["content"] == "I am the Magic Conch." and pair["source"] == f"{path}:row 1"
    (reject,) = result.rejects
    assert (reject["row"], reject["reason"], reject["detail"]) == (2, "empty_side", "rejected is empty")


def test_on_policy_pairs_reject_the_models_answer_once_per_prompt_and_chosen():
    from conch.preference.on_policy import against_answers, reference_pairs

    result = prepare_preference([str(p) for p in OURS])
    # A prompt given with two rejected sides is asked once.
    second_reject = {**result.pairs["train"][0], "rejected": {"role": "assistant", "content": "Who knows."}}
    given = [*result.pairs["train"], second_reject]
    references = reference_pairs(given)
    assert references == result.pairs["train"]
    answers = [p["chosen"]["content"] if i % 2 else "  Maybe someday. " for i, p in enumerate(references)]
    answers[-1] = " "
    pairs = against_answers(references, answers)
    # An answer equal to chosen, or empty, leaves nothing to prefer; every other one becomes the rejected side.
    expected = [p for i, p in enumerate(references[:-1]) if i % 2 == 0]
    expected = [p for p in expected if p["chosen"]["content"].strip().casefold() != "maybe someday."]
    assert [p["id"] for p in pairs] == [p["id"] for p in expected]
    assert all(p["rejected"] == {"role": "assistant", "content": "  Maybe someday. "} for p in pairs)
    assert all(
        p["chosen"] == r["chosen"] and p["messages"] == r["messages"]
        for p, r in zip(pairs, expected, strict=True)
    )
