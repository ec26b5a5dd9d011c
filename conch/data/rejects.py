"""Why a record is refused: every reject reason, the exception that carries one, and JSON's type names.

Apart from records.py and tools.py, which both raise these, so that neither imports the other.
"""

from __future__ import annotations

TOOL_REASONS = {
    "malformed_tools": "the tools column is not a JSON list of function definitions with name and parameters",
    "malformed_tool_call": "a function_call turn is not JSON {name, arguments} (or a list of them) with "
    "arguments a JSON object",
    "unknown_tool": "a function_call names a function the record's tools do not offer",
    "orphan_observation": "an observation (tool result) does not follow a function_call, or a function_call "
    "is not followed by its observation",
}

REASONS = {
    "malformed_json": "a JSONL line (or a JSON cell of a CSV/Parquet row) does not parse",
    "invalid_utf8": "a JSONL line holds bytes that are not UTF-8",
    "not_an_object": "the record is not a JSON object (e.g. a bare string, number or list)",
    "unknown_schema": "no instruction/output, conversations or messages key",
    "missing_field": "a required field (or a turn's role/content) is absent",
    "wrong_type": "a field has the wrong JSON type (e.g. output is a number, null or list)",
    "empty_field": "instruction, output or a turn's content is empty or whitespace only",
    "unknown_role": "a turn's role is not one LLaMA-Factory knows",
    "wrong_role_order": "turns do not alternate user/observation then assistant/function_call, "
    "or do not end with assistant",
    "too_long": "system + all message characters exceed max_chars",
    "duplicate": "same as an earlier record after casefold and whitespace collapse",
    **TOOL_REASONS,
}


class RecordReject(Exception):
    """One record is unusable; processing goes on with the next. `reason` is one of `reasons`."""

    reasons = REASONS

    def __init__(self, reason: str, detail: str):
        if reason not in self.reasons:
            raise ValueError(f"conch bug: unknown reject reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def type_name(value: object) -> str:
    """JSON's name for a value's type, so details read the same whatever the source format."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
