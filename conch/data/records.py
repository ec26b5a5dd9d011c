"""Turn one raw record (alpaca, sharegpt or OpenAI messages) into conch's normalised form.

The normalised form is what LLaMA-Factory reads as "sharegpt" formatting with role/content
tags: {"messages": [...], "system": str, "tools": str}. Anything LLaMA-Factory would choke
on, or silently train on badly, is refused here with one of REASONS so the user can fix it.
"""

from __future__ import annotations

import json

from conch.data.rejects import RecordReject, type_name
from conch.data.tools import check_tool_turns, tool_names

# The roles LLaMA-Factory's sharegpt converter is registered with in dataset_info, and the aliases that
# sharegpt ("human", "gpt") and OpenAI ("tool") exports use for them.
ROLE_ALIASES = {
    "user": ("human",),
    "assistant": ("gpt",),
    "system": (),
    "function_call": (),
    "observation": ("tool",),
}
ROLE_MAP = {name: role for role, aliases in ROLE_ALIASES.items() for name in (role, *aliases)}
# LLaMA-Factory's sharegpt converter checks exactly this parity, then drops the sample.
EVEN_ROLES = ("user", "observation")
ODD_ROLES = ("assistant", "function_call")


def _text(value: object, field: str, *, optional: bool = False) -> str:
    """A stripped string field; optional fields may be absent, null or empty."""
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise RecordReject("wrong_type", f"{field}: expected a string, got {type_name(value)}")
    # CSVs saved on Windows carry CRLF inside quoted cells; the model should see one style.
    text = value.replace("\r\n", "\n").strip()
    if not text and not optional:
        what = "whitespace only" if value else "empty"
        raise RecordReject("empty_field", f"{field} is {what}")
    return text


def _tools(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        # LLaMA-Factory wants the tools column as a JSON string; accept the parsed form too.
        return json.dumps(value, ensure_ascii=False)
    return _text(value, "tools", optional=True)


def normalise(obj: object) -> dict:
    """Return {"messages", "system", "tools"} or raise RecordReject."""
    if not isinstance(obj, dict):
        raise RecordReject("not_an_object", f"expected a JSON object, got {type_name(obj)}")
    if "conversations" in obj:
        return _from_turns(obj, "conversations")
    if "messages" in obj:
        return _from_turns(obj, "messages")
    if "instruction" in obj or "output" in obj:
        return _from_alpaca(obj)
    keys = ", ".join(sorted(map(str, obj))) or "none"
    raise RecordReject(
        "unknown_schema",
        f"keys found: {keys}; expected instruction+output (alpaca), conversations (sharegpt) "
        "or messages (OpenAI)",
    )


def _from_alpaca(obj: dict) -> dict:
    for field in ("instruction", "output"):
        if field not in obj:
            raise RecordReject("missing_field", f"{field} (alpaca records need instruction and output)")
    instruction = _text(obj["instruction"], "instruction")
    extra = _text(obj.get("input"), "input", optional=True)
    output = _text(obj["output"], "output")
    system = _text(obj.get("system"), "system", optional=True)
    messages = []
    history = obj.get("history")
    if history is not None:
        if not isinstance(history, list | tuple):
            raise RecordReject(
                "wrong_type",
                f"history: expected a list of [question, answer] pairs, got {type_name(history)}",
            )
        for i, pair in enumerate(history):
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise RecordReject(
                    "wrong_type", f"history[{i}]: expected a [question, answer] pair, got {type_name(pair)}"
                )
            messages.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]")})
            messages.append({"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")})
    prompt = f"{instruction}\n{extra}" if extra else instruction
    messages.append({"role": "user", "content": prompt})
    messages.append({"role": "assistant", "content": output})
    tools = _tools(obj.get("tools"))
    tool_names(tools)  # LLaMA-Factory formats the tools column of every record
    return {"messages": messages, "system": system, "tools": tools}


def _from_turns(obj: dict, key: str) -> dict:
    turns = obj[key]
    if not isinstance(turns, list | tuple):
        raise RecordReject("wrong_type", f"{key}: expected a list of turns, got {type_name(turns)}")
    if not turns:
        raise RecordReject("empty_field", f"{key} is an empty list")
    system = _text(obj.get("system"), "system", optional=True)
    tools = _tools(obj.get("tools"))
    preferred = ("from", "value") if key == "conversations" else ("role", "content")
    messages, positions = [], []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise RecordReject("wrong_type", f"{where}: expected an object, got {type_name(turn)}")
        # Exports mix the two spellings; take whichever pair the turn actually uses.
        role_key, content_key = preferred
        if role_key not in turn and "role" in turn:
            role_key, content_key = "role", "content"
        elif role_key not in turn and "from" in turn:
            role_key, content_key = "from", "value"
        for field in (role_key, content_key):
            if field not in turn:
                raise RecordReject("missing_field", f"{where}.{field}")
        raw_role = turn[role_key]
        if not isinstance(raw_role, str):
            raise RecordReject(
                "wrong_type", f"{where}.{role_key}: expected a string, got {type_name(raw_role)}"
            )
        role = ROLE_MAP.get(raw_role.strip().lower())
        if role is None:
            known = ", ".join(ROLE_MAP)
            raise RecordReject("unknown_role", f"{where}.{role_key} is {raw_role!r}; known roles: {known}")
        content = _text(turn[content_key], f"{where}.{content_key}")
        if role == "system":
            if messages:
                raise RecordReject("wrong_role_order", f"{where}: a system turn is only allowed first")
            # As in LLaMA-Factory: a leading system turn takes precedence over the system column.
            system = content
            continue
        messages.append({"role": role, "content": content})
        positions.append(i)
    _check_order(messages, positions, key)
    check_tool_turns(messages, positions, tools, key)
    return {"messages": messages, "system": system, "tools": tools}


def _check_order(messages: list[dict], positions: list[int], key: str) -> None:
    if not messages:
        raise RecordReject("wrong_role_order", f"{key} has no user/assistant turns, only a system turn")
    if messages[0]["role"] != "user":
        raise RecordReject(
            "wrong_role_order", f"{key}[{positions[0]}] is {messages[0]['role']}; the first turn must be user"
        )
    for n, (message, i) in enumerate(zip(messages, positions, strict=True)):
        expected = EVEN_ROLES if n % 2 == 0 else ODD_ROLES
        if message["role"] not in expected:
            raise RecordReject(
                "wrong_role_order",
                f"{key}[{i}] is {message['role']}, expected {' or '.join(expected)} "
                "(turns alternate user/observation, then assistant/function_call)",
            )
    if messages[-1]["role"] != "assistant":
        raise RecordReject(
            "wrong_role_order",
            f"{key} ends with {messages[-1]['role']}; the last turn must be assistant",
        )


def fold(text: str) -> str:
    """Text as duplicates are compared: casefolded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def dedup_key(record: dict) -> str:
    """Key for duplicates, ids and splits: records differing only in case/whitespace collide."""
    turns = [[m["role"], fold(m["content"])] for m in record["messages"]]
    return json.dumps([fold(record["system"]), turns], ensure_ascii=False)


def char_count(record: dict) -> int:
    return len(record["system"]) + sum(len(m["content"]) for m in record["messages"])
