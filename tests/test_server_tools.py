"""Tool requests against a real server on loopback, through the official openai client: what is accepted,
what is refused and why, and that nothing a model writes turns into a 500.

The tiny random model babbles, so these tests check the plumbing (prompts in the trained format, forced
call starts, validation, never-a-500); tests/test_tools_workflow.py has a model that really calls tools.
"""

from __future__ import annotations

import functools
import json

import httpx
import openai
import pytest
from test_server_support import _ROOT, ARCH, RECORDS, start_server
from test_tool_parsing import ROUND_TRIP

from conch.llamafactory.trained_format import TrainedFormat

SYSTEM = "You are a helpful assistant."
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# The user asks, the assistant calls get_weather, the tool answers.
ASK, CALLED, RESULT = ROUND_TRIP[:1], *ROUND_TRIP[1:]


@functools.cache
def tool_model() -> str:
    """A random-init model whose tokenizer has seen a tool record: the tool prompt fits its context."""
    from conch.model.scratch import build_scratch_model

    record = {
        "system": "",
        "tools": json.dumps([WEATHER["function"]]),
        "messages": [ASK[0], {"role": "function_call", "content": '{"name": "get_weather"}'}],
    }
    out = _ROOT / "tool-model"
    arch = {**ARCH, "max_position_embeddings": 1024}
    build_scratch_model(
        [*RECORDS, record], out, arch=arch, vocab_size=500, seed=0, template="qwen", default_system=SYSTEM
    )
    return str(out)


@functools.cache
def offline():
    from conch.model.modeling import load

    return load(tool_model())


def offline_greedy(messages: list[dict], max_tokens: int) -> str:
    from conch.model.modeling import generate, render

    model, tokenizer = offline()
    return generate(model, tokenizer, [render(tokenizer, messages)], max_tokens)[0]


@pytest.fixture(scope="module")
def server():
    """The tiny model twice: with its template ("tiny-qwen") and without ("tiny")."""
    config = _ROOT / "serve-tools.yaml"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "tiny-qwen", "path": tool_model(), "template": "qwen", "default_system": SYSTEM},
                    {"name": "tiny", "path": tool_model()},
                ],
                "max_new_tokens": 64,
            }
        )
    )
    return start_server("tools", ["--config", str(config)])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def trained() -> TrainedFormat:
    return TrainedFormat(offline()[1], "qwen", SYSTEM)


def as_trained(messages: list[dict]) -> list[dict]:
    roles = {"tool": "observation"}
    out = []
    for m in messages:
        if m.get("tool_calls"):
            f = m["tool_calls"][0]["function"]
            content = json.dumps({"name": f["name"], "arguments": json.loads(f["arguments"])})
            out.append({"role": "function", "content": content})
        else:
            out.append({"role": roles.get(m["role"], m["role"]), "content": m["content"]})
    return out


def test_tool_prompts_are_encoded_as_in_training_and_plain_chats_as_before(client):
    fmt = trained()
    r = client.chat.completions.create(model="tiny-qwen", messages=ASK, tools=[WEATHER], max_tokens=1)
    assert r.usage.prompt_tokens == len(fmt.prompt_ids(as_trained(ASK), None, [WEATHER["function"]]))
    history = [*ASK, CALLED, RESULT]
    r = client.chat.completions.create(model="tiny-qwen", messages=history, tools=[WEATHER], max_tokens=1)
    assert r.usage.prompt_tokens == len(fmt.prompt_ids(as_trained(history), None, [WEATHER["function"]]))
    # No tools (or tool_choice none): the chat template as before, the same answer as offline.
    for extra in ({}, {"tools": [WEATHER], "tool_choice": "none"}):
        r = client.chat.completions.create(
            model="tiny-qwen", messages=ASK, temperature=0, max_tokens=12, **extra
        )
        assert r.choices[0].message.content == offline_greedy(ASK, 12)
        assert r.choices[0].message.tool_calls is None


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "choice", ["auto", "required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_whatever_the_model_writes_the_answer_is_a_200(client, choice, stream):
    """A random model under a forced call start writes junk arguments: content back, never a 500."""
    kwargs = dict(model="tiny-qwen", messages=ASK, tools=[WEATHER], tool_choice=choice, max_tokens=24)
    if stream:
        chunks = list(client.chat.completions.create(stream=True, **kwargs))
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
        assert len(reasons) == 1 and reasons[0] in ("stop", "length", "tool_calls")
    else:
        r = client.chat.completions.create(**kwargs)
        message = r.choices[0].message
        assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
        assert message.tool_calls or isinstance(message.content, str)
        if choice != "auto" and not message.tool_calls:  # the forced start is part of what comes back
            assert message.content.startswith('<tool_call>\n{"name":')


def test_forced_call_starts_are_in_the_prompt(client):
    fmt = trained()
    plain = len(fmt.prompt_ids(as_trained(ASK), None, [WEATHER["function"]]))
    named = {"type": "function", "function": {"name": "get_weather"}}
    for choice, prefix in (("required", fmt.call_prefix(None)), (named, fmt.call_prefix("get_weather"))):
        r = client.chat.completions.create(
            model="tiny-qwen", messages=ASK, tools=[WEATHER], tool_choice=choice, max_tokens=1
        )
        assert r.usage.prompt_tokens == plain + len(prefix.ids)


@pytest.mark.parametrize(
    "body, status, words",
    [
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "fly"}}},
            422,
            "'fly'",
        ),
        ({"tool_choice": "required"}, 422, "tool_choice needs tools"),
        ({"tools": [WEATHER, WEATHER]}, 422, "unique"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, 422, "tools.0.function.name"),
        ({"messages": [{"role": "user", "content": "hi", "tool_call_id": "c"}]}, 422, "tool_call_id"),
        ({"messages": [{"role": "user", "content": None}]}, 422, "null only on an assistant"),
        (
            {
                "messages": [
                    *ASK,
                    dict(
                        CALLED,
                        tool_calls=[
                            dict(
                                CALLED["tool_calls"][0],
                                function={"name": "get_weather", "arguments": "{city"},
                            )
                        ],
                    ),
                    RESULT,
                ]
            },
            400,
            "arguments is not JSON",
        ),
        ({"messages": [*ASK, RESULT]}, 400, "turn 2 is observation"),
        ({"messages": [*ASK, CALLED]}, 400, "must end with a user message or tool results"),
        ({"model": "tiny", "tools": [WEATHER]}, 400, "--template"),
        ({"model": "tiny", "messages": [*ASK, CALLED, RESULT]}, 400, "--template"),
    ],
)
def test_bad_tool_requests_are_refused_with_the_reason(server, body, status, words):
    r = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        json={"model": "tiny-qwen", "messages": ASK, "max_tokens": 4, **body},
        timeout=60,
    )
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_copied_back_messages_are_accepted(client):
    """`messages.append(response.choices[0].message)`: the client sends the message object back as is."""
    first = client.chat.completions.create(model="tiny-qwen", messages=ASK, tools=[WEATHER], max_tokens=8)
    message = first.choices[0].message
    follow = [*ASK, message, {"role": "user", "content": "And in Oslo?"}]
    if message.tool_calls:  # a call needs its result before the next question
        follow[2:2] = [{"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "{}"}]
        follow = [*follow[:3], {"role": "assistant", "content": "It is sunny."}, *follow[3:]]
    r = client.chat.completions.create(model="tiny-qwen", messages=follow, tools=[WEATHER], max_tokens=4)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")
