"""Tool records (LLaMA-Factory's sharegpt tool format) checked before LLaMA-Factory sees them.

A record's `tools` column is JSON text: a list of function definitions (name, description, JSON-schema
parameters, optionally wrapped as {"type": "function", "function": {...}}). A `function_call` turn is JSON
text too: {"name", "arguments"} or a list of them, and the next turn is its `observation`. LLaMA-Factory
formats both while tokenizing, and a malformed one stops the whole training run with a traceback (tools that
are not JSON, a call without "name" or "arguments", parameters without "properties"); a call to a function the
record does not offer, or a result no call asked for, trains the model on nonsense without a word. Each is a
reject with its reason here, and the record passes through unchanged otherwise.
"""

from __future__ import annotations

import json

from conch.data.rejects import TOOL_REASONS, RecordReject, type_name

REASONS = TOOL_REASONS


def _json(text: str, what: str, reason: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordReject(reason, f"{what} is not valid JSON ({exc.msg} at character {exc.pos})") from None


def tool_names(tools: str) -> set[str]:
    """Names of the functions a `tools` column offers; RecordReject if it is not what LLaMA-Factory reads."""
    if not tools:
        return set()
    found = _json(tools, "tools", "malformed_tools")
    if not isinstance(found, list):
        raise RecordReject("malformed_tools", f"tools: expected a list of functions, got {type_name(found)}")
    names = set()
    for i, tool in enumerate(found):
        if isinstance(tool, dict) and tool.get("type") == "function":
            tool = tool.get("function")
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise RecordReject("malformed_tools", f"tools[{i}]: expected an object with a string name")
        parameters = tool.get("parameters")
        # LLaMA-Factory's default tool format reads parameters.properties of every tool.
        if not isinstance(parameters, dict) or not isinstance(parameters.get("properties"), dict):
            raise RecordReject(
                "malformed_tools",
                f"tools[{i}] ({tool['name']}): parameters must be an object with properties",
            )
        names.add(tool["name"])
    return names


def _calls(content: str, where: str) -> list[dict]:
    found = _json(content, where, "malformed_tool_call")
    calls = found if isinstance(found, list) else [found]
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or "arguments" not in call:
            raise RecordReject(
                "malformed_tool_call", f'{where}: expected {{"name": ..., "arguments": {{...}}}}'
            )
        if not isinstance(call["arguments"], dict):
            raise RecordReject(
                "malformed_tool_call",
                f"{where}: arguments of {call['name']} is {type_name(call['arguments'])}, expected a JSON object",
            )
    return calls


def check_tool_turns(messages: list[dict], positions: list[int], tools: str, key: str) -> None:
    """RecordReject unless every call is well formed, names an offered tool and gets its result next."""
    offered = tool_names(tools)
    for n, (message, i) in enumerate(zip(messages, positions, strict=True)):
        where = f"{key}[{i}]"
        if message["role"] == "function_call":
            for call in _calls(message["content"], f"{where} (function_call)"):
                if call["name"] not in offered:
                    listed = ", ".join(sorted(offered)) or "none"
                    raise RecordReject(
                        "unknown_tool", f"{where} calls {call['name']!r}; the record's tools offer: {listed}"
                    )
            following = messages[n + 1]["role"] if n + 1 < len(messages) else "nothing"
            if following != "observation":
                raise RecordReject(
                    "orphan_observation", f"{where} is a function_call followed by {following}"
                )
        elif message["role"] == "observation" and (n == 0 or messages[n - 1]["role"] != "function_call"):
            before = messages[n - 1]["role"] if n else "nothing"
            raise RecordReject(
                "orphan_observation", f"{where} is an observation after {before}, not a function_call"
            )
