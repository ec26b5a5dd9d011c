"""One raw preference record -> a normalised pair or KTO record, or a reject with its reason.

Three raw schemas are read (the ones LLaMA-Factory users already have):

- sharegpt + ranking: `conversations` (or `messages`) ending with the user turn, `chosen` and `rejected`
  each one assistant turn ({"from": "gpt", "value": ...}, {"role", "content"} or a plain string);
- alpaca: `instruction` (+ `input`, `system`, `history`) with `chosen` and `rejected` strings;
- KTO: a whole conversation (sharegpt, OpenAI messages or alpaca `output`) with `kto_tag` (or `label`,
  as LLaMA-Factory's kto_en_demo.json names it) true for a desirable answer, false for an undesirable one.

The prompt part goes through conch.data's SFT normaliser, so roles, order, types and emptiness are checked
(and reported) exactly as for SFT data.
"""

from __future__ import annotations

import json

from conch.data.records import ROLE_MAP, fold, normalise
from conch.data.rejects import REASONS, RecordReject, type_name

PREF_REASONS = {
    **REASONS,
    "unknown_schema": "neither chosen+rejected (a pair) nor kto_tag/label (a KTO record)",
    "missing_prompt": "no conversations/messages/instruction, or an empty one, before the answers",
    "missing_side": "a pair lacks chosen or rejected",
    "empty_side": "chosen or rejected is empty or whitespace only",
    "identical_sides": "chosen equals rejected (after casefold and whitespace collapse): nothing to learn",
    "bad_kto_tag": "kto_tag/label is not true or false",
}
SIDES = ("chosen", "rejected")
KTO_KEYS = ("kto_tag", "label")
KNOWN_KEYS = frozenset(
    {"instruction", "input", "system", "history", "conversations", "messages", "tools", "output"}
    | set(SIDES)
    | set(KTO_KEYS)
)


class PrefReject(RecordReject):
    """One preference record is unusable; processing goes on with the next."""

    reasons = PREF_REASONS


def normalise_preference(obj: object) -> dict:
    """Return a pair {"kind": "pair", messages, chosen, rejected, system, tools}
    or {"kind": "kto", messages, kto_tag, system, tools}, or raise PrefReject."""
    if not isinstance(obj, dict):
        raise PrefReject("not_an_object", f"expected a JSON object, got {type_name(obj)}")
    try:
        if any(side in obj for side in SIDES):
            return _pair(obj)
        if any(key in obj for key in KTO_KEYS):
            return _kto(obj)
    except RecordReject as r:
        raise PrefReject(r.reason, r.detail) from None
    keys = ", ".join(sorted(map(str, obj))) or "none"
    looks_sft = "output" in obj or "conversations" in obj or "messages" in obj
    hint = "; this looks like an SFT record: list it under data.raw" if looks_sft else ""
    raise PrefReject(
        "unknown_schema", f"keys found: {keys}; expected chosen and rejected, or kto_tag (or label){hint}"
    )


def _prompt_key(obj: dict) -> str | None:
    for key in ("conversations", "messages", "instruction"):
        if key in obj:
            return key
    return None


def _side(obj: dict, side: str) -> str:
    if side not in obj:
        other = SIDES[1 - SIDES.index(side)]
        raise PrefReject("missing_side", f"{side} is absent (a pair needs both chosen and {other})")
    value = obj[side]
    where = side
    if isinstance(value, dict):
        # One assistant turn, spelt either way; LLaMA-Factory drops pairs whose answer is another role.
        role_key, content_key = (
            ("from", "value") if "from" in value or "value" in value else ("role", "content")
        )
        for field in (role_key, content_key):
            if field not in value:
                raise PrefReject("missing_field", f"{side}.{field}")
        role = value[role_key]
        if not isinstance(role, str) or ROLE_MAP.get(role.strip().lower()) != "assistant":
            raise PrefReject(
                "unknown_role", f"{side}.{role_key} is {role!r}; an answer must be an assistant (gpt) turn"
            )
        value, where = value[content_key], f"{side}.{content_key}"
    if value is None:
        raise PrefReject("missing_side", f"{where} is null")
    if not isinstance(value, str):
        raise PrefReject("wrong_type", f"{where}: expected a string or a turn object, got {type_name(value)}")
    text = value.replace("\r\n", "\n").strip()
    if not text:
        raise PrefReject("empty_side", f"{where} is {'whitespace only' if value else 'empty'}")
    return text


def _pair(obj: dict) -> dict:
    key = _prompt_key(obj)
    if key is None:
        raise PrefReject("missing_prompt", "no conversations, messages or instruction before chosen/rejected")
    chosen, rejected = _side(obj, "chosen"), _side(obj, "rejected")
    if fold(chosen) == fold(rejected):
        raise PrefReject("identical_sides", f"chosen and rejected are both {chosen[:80]!r}")
    prompt = {k: v for k, v in obj.items() if k not in SIDES}
    if key == "instruction":
        if not isinstance(obj["instruction"], str) or not obj["instruction"].strip():
            _empty_prompt(obj["instruction"], "instruction")
        record = normalise({**prompt, "output": chosen})
    else:
        turns = obj[key]
        if not isinstance(turns, list | tuple):
            raise PrefReject("wrong_type", f"{key}: expected a list of turns, got {type_name(turns)}")
        if not turns:
            raise PrefReject("missing_prompt", f"{key} is an empty list")
        if isinstance(turns[-1], dict):
            last = turns[-1].get("from", turns[-1].get("role"))
            if isinstance(last, str) and ROLE_MAP.get(last.strip().lower()) in ("assistant", "function_call"):
                raise PrefReject(
                    "wrong_role_order",
                    f"{key}[{len(turns) - 1}] is {last!r}; in a pair the prompt ends with the user turn "
                    "and chosen/rejected hold the answers",
                )
        # The chosen answer closes the conversation, so the SFT checks see a whole one.
        record = normalise({**prompt, key: [*turns, {"role": "assistant", "content": chosen}]})
    return {
        "kind": "pair",
        "messages": record["messages"][:-1],
        "chosen": {"role": "assistant", "content": chosen},
        "rejected": {"role": "assistant", "content": rejected},
        "system": record["system"],
        "tools": record["tools"],
    }


def _empty_prompt(value: object, field: str) -> None:
    if value is None or isinstance(value, str):
        raise PrefReject("missing_prompt", f"{field} is {'null' if value is None else 'empty'}")
    raise PrefReject("wrong_type", f"{field}: expected a string, got {type_name(value)}")


def _kto(obj: dict) -> dict:
    tag_key = "kto_tag" if "kto_tag" in obj else "label"
    tag = obj[tag_key]
    if not isinstance(tag, bool):
        raise PrefReject("bad_kto_tag", f"{tag_key} is {json.dumps(tag)[:40]}; use true or false")
    if _prompt_key(obj) is None:
        raise PrefReject("missing_prompt", "no conversations, messages or instruction before the answer")
    record = normalise({k: v for k, v in obj.items() if k not in KTO_KEYS})
    return {"kind": "kto", **record, "kto_tag": tag}


def prompt_key(record: dict) -> str:
    """Folded system + prompt turns: what the split hashes, so every answer to a prompt shares its split."""
    turns = record["messages"] if record["kind"] == "pair" else record["messages"][:-1]
    return json.dumps([fold(record["system"]), [[m["role"], fold(m["content"])] for m in turns]])


def dedup_key(record: dict) -> str:
    if record["kind"] == "pair":
        answers = [fold(record["chosen"]["content"]), fold(record["rejected"]["content"])]
    else:
        answers = [fold(record["messages"][-1]["content"]), record["kto_tag"]]
    return json.dumps([record["kind"], prompt_key(record), answers], ensure_ascii=False)


def char_count(record: dict) -> int:
    n = len(record["system"]) + sum(len(m["content"]) for m in record["messages"])
    if record["kind"] == "pair":
        n += len(record["chosen"]["content"]) + len(record["rejected"]["content"])
    return n


def context(record: dict) -> list[dict]:
    """System (if any) + the prompt turns of a pair record, or of a KTO record without its answer."""
    turns = record["messages"] if "chosen" in record else record["messages"][:-1]
    return [{"role": "system", "content": record["system"]}, *turns] if record.get("system") else list(turns)
