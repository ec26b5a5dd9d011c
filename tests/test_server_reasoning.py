"""Reasoning output through the official openai client: an R1-style model's thinking comes back as
`reasoning_content` (in the message; streamed as its own deltas before the content), as vLLM's deepseek_r1
reasoning parser returns it, and a thinking model's tool call is parsed after its thought.

The model is a tiny scratch model with LLaMA-Factory's `deepseekr1` template, fine-tuned here until it
answers its few prompts word for word with a <think> block first (a minute of CPU, no LLaMA-Factory run).
"""

from __future__ import annotations

import functools
import json

import openai
import pytest
from test_server_support import _ROOT, ARCH, start_server

TEMPLATE = "deepseekr1"
WEATHER = {
    "name": "get_weather",
    "description": "Get the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
HELLO = [{"role": "user", "content": "Hello!"}]
PARIS = [{"role": "user", "content": "What is the weather in Paris?"}]
THOUGHT = "The user greets me. I greet back."
ANSWER = "Hello! How can I help?"
TOOL_THOUGHT = "I need the weather tool."
# deepseekr1 writes calls in LLaMA-Factory's default tool format.
CALL = 'Action: get_weather\nAction Input: {"city": "Paris"}'


@functools.cache
def thinking_model() -> str:
    """A model that answers HELLO with THOUGHT then ANSWER, and PARIS (the tool offered) by thinking, then
    calling get_weather: trained on exactly the prompts the server will build."""
    import torch
    from transformers import AutoModelForCausalLM

    from conch.engine.tokenizer import encode, load_tokenizer
    from conch.llamafactory.trained_format import TrainedFormat
    from conch.model.modeling import render
    from conch.model.scratch import build_scratch_model

    out = _ROOT / "thinking-model"
    answers = [f"<think>\n{THOUGHT}\n</think>\n\n{ANSWER}", f"<think>\n{TOOL_THOUGHT}\n</think>\n\n{CALL}"]
    records = [{"messages": [HELLO[0], {"role": "assistant", "content": a}]} for a in answers]
    records[1]["tools"] = json.dumps([WEATHER])
    build_scratch_model(records, out, arch=ARCH, vocab_size=400, seed=0, template=TEMPLATE)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    fmt = TrainedFormat(load_tokenizer(str(out)), TEMPLATE)
    tokenizer = fmt.tokenizer
    prompts = [encode(tokenizer, render(tokenizer, HELLO)), fmt.prompt_ids(PARIS, None, [WEATHER])]
    sequences = [
        p + encode(tokenizer, a) + [tokenizer.eos_token_id] for p, a in zip(prompts, answers, strict=True)
    ]
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(200):
        loss = 0.0
        for prompt, ids in zip(prompts, sequences, strict=True):
            logits = model(torch.tensor([ids])).logits[0, len(prompt) - 1 : -1]
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(ids[len(prompt) :]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    model.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def client():
    server = start_server("thinking", ["--model", thinking_model(), "--name", "r1", "--template", TEMPLATE])
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_thinking_comes_back_as_reasoning_content(client):
    r = client.chat.completions.create(model="r1", messages=HELLO, temperature=0, max_tokens=40)
    message = r.choices[0].message
    assert message.reasoning_content == THOUGHT
    assert message.content == ANSWER
    assert r.choices[0].finish_reason == "stop"


def test_streamed_thinking_comes_first_in_its_own_deltas(client):
    chunks = list(
        client.chat.completions.create(model="r1", messages=HELLO, temperature=0, max_tokens=40, stream=True)
    )
    deltas = [c.choices[0].delta for c in chunks]
    kinds = [
        "reasoning" if getattr(d, "reasoning_content", None) else "content"
        for d in deltas
        if getattr(d, "reasoning_content", None) or d.content
    ]
    assert kinds == sorted(kinds, key=["reasoning", "content"].index) and len(set(kinds)) == 2
    assert kinds.count("reasoning") > 1  # streamed as it is generated, not in one piece at the end
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas).strip() == THOUGHT
    assert "".join(d.content or "" for d in deltas) == ANSWER
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
def test_a_thinking_model_calls_a_tool_after_its_thought(client, stream):
    kwargs = dict(
        model="r1", messages=PARIS, tools=[{"type": "function", "function": WEATHER}], temperature=0
    )
    if not stream:
        r = client.chat.completions.create(max_tokens=60, **kwargs)
        message = r.choices[0].message
        assert message.reasoning_content == TOOL_THOUGHT and message.content is None
        (call,) = message.tool_calls
        assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
        assert r.choices[0].finish_reason == "tool_calls"
        return
    chunks = list(client.chat.completions.create(max_tokens=60, stream=True, **kwargs))
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas).strip() == TOOL_THOUGHT
    calls = [t for d in deltas for t in d.tool_calls or ()]
    assert calls[0].function.name == "get_weather" and calls[0].id
    assert json.loads("".join(t.function.arguments or "" for t in calls)) == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
