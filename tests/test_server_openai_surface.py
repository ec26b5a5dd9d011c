"""The request surface OpenAI clients send, through the official `openai` client against a real server: `n`
choices, logprobs, penalties, and structured outputs (`response_format`) constrained per request in the batch.

The server is the shared one of test_server_support (the tiny random model). Its answers are gibberish, which is
the point for structured outputs: even a model that has learnt nothing answers JSON that validates.
"""

from __future__ import annotations

import concurrent.futures
import json

import jsonschema
import openai
import pytest
import torch
from test_server_support import main_server, offline, offline_greedy, streamed_chat

from conch.engine.sampling import SamplingParams, penalize
from conch.model.modeling import render

ASK = [{"role": "user", "content": "Who are you?"}]
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no", "maybe"]},
        "sure": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    },
    "required": ["answer", "sure", "tags"],
    "additionalProperties": False,
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True}}


@pytest.fixture(scope="module")
def client():
    server = main_server()
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_n_choices_are_seeded_apart_summed_in_usage_and_streamed_by_index(client):
    body = dict(model="tiny", messages=ASK, temperature=1.0, seed=3, max_tokens=12, n=3)
    r = client.chat.completions.create(**body)
    texts = [c.message.content for c in r.choices]
    assert [c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) == 3
    assert r.usage.completion_tokens == 36 and r.usage.total_tokens == r.usage.prompt_tokens + 36
    assert [c.message.content for c in client.chat.completions.create(**body).choices] == texts  # seeded
    chunks = streamed_chat(client, **body)
    streamed = [
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
        for i in range(3)
    ]
    assert streamed == texts
    finals = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finals == [0, 1, 2] and chunks[-1].usage.completion_tokens == 36


def test_greedy_choices_all_equal_the_offline_answer(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=8, n=2)
    assert [c.message.content for c in r.choices] == [offline_greedy(ASK, 8)] * 2
    assert r.usage.completion_tokens == 16


def test_chat_logprobs_are_the_models_own_and_stream_the_same(client):
    r = client.chat.completions.create(
        model="tiny", messages=ASK, temperature=0, max_tokens=16, logprobs=True, top_logprobs=3
    )
    content = r.choices[0].logprobs.content
    assert len(content) == 16
    for entry in content:  # greedy: the chosen token is the most likely one
        assert len(entry.top_logprobs) == 3 and entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob >= entry.top_logprobs[2].logprob
    joined = bytes(b for entry in content for b in entry.bytes).decode("utf-8", errors="replace")
    assert joined.strip() == r.choices[0].message.content == offline_greedy(ASK, 16)
    # The first token's log-probability, from the model run offline.
    model, tokenizer = offline()
    ids = tokenizer(render(tokenizer, ASK), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        first = torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), -1)
    assert content[0].logprob == pytest.approx(float(first.max()), abs=1e-3)
    chunks = streamed_chat(
        client, model="tiny", messages=ASK, temperature=0, max_tokens=16, logprobs=True, top_logprobs=3
    )
    streamed = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content
    ]
    assert [(e.token, e.bytes) for e in streamed] == [(e.token, e.bytes) for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-5)
    plain = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_in_the_legacy_shape(client):
    body = dict(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=10, logprobs=2)
    r = client.completions.create(**body)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 10
    for token_lp, top in zip(lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 1 <= len(top) <= 2 and token_lp == pytest.approx(max(top.values()))
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    streamed = [
        t
        for c in client.completions.create(**body, stream=True)
        if c.choices[0].logprobs
        for t in c.choices[0].logprobs.tokens
    ]
    assert streamed == lp.tokens


@pytest.mark.parametrize("penalty", [{"presence_penalty": 2}, {"frequency_penalty": 2}])
def test_presence_and_frequency_penalties_stop_greedy_repeats(client, penalty):
    def tokens(**extra):
        r = client.chat.completions.create(
            model="tiny", messages=ASK, temperature=0, max_tokens=40, logprobs=True, **extra
        )
        return [tuple(e.bytes) for e in r.choices[0].logprobs.content]

    assert len(set(tokens())) < 40  # the random model loops when greedy
    # Its logits differ by far less than 2: a penalty of 2 rules out every token it has already said.
    assert len(set(tokens(**penalty))) == 40


def test_repetition_penalty_is_transformers_and_vllms(client):
    from transformers import RepetitionPenaltyLogitsProcessor

    logits, seen, output = torch.randn(50), [3, 7, 7, 11], [11, 20]
    expected = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([seen + output]), logits[None].clone())[0]
    mine = logits.clone()
    penalize(mine, SamplingParams(repetition_penalty=1.3), seen, output)
    assert torch.equal(mine, expected)
    answer = client.chat.completions.create(
        model="tiny", messages=ASK, temperature=0, max_tokens=24, extra_body={"repetition_penalty": 5.0}
    )
    assert answer.choices[0].message.content != offline_greedy(ASK, 24)


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answers_always_validate(client, stream):
    body = dict(
        model="tiny", messages=ASK, temperature=1.0, seed=5, max_tokens=60, n=4, response_format=JSON_SCHEMA
    )
    if stream:
        chunks = streamed_chat(client, **body)
        answers = [
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == i)
            for i in range(4)
        ]
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        r = client.chat.completions.create(**body)
        answers, reasons = [c.message.content for c in r.choices], [c.finish_reason for c in r.choices]
    assert reasons == ["stop"] * 4
    for answer in answers:
        jsonschema.validate(json.loads(answer), SCHEMA)
    completion = client.completions.create(
        model="tiny", prompt="{", temperature=0, max_tokens=60, extra_body={"response_format": JSON_SCHEMA}
    )
    jsonschema.validate(json.loads(completion.choices[0].text), SCHEMA)


def test_json_object_is_an_object_and_the_budget_cut_says_length(client):
    r = client.chat.completions.create(
        model="tiny", messages=ASK, temperature=0, max_tokens=6, response_format={"type": "json_object"}
    )
    assert r.choices[0].message.content.startswith("{") and r.choices[0].finish_reason == "length"


def test_constrained_and_unconstrained_requests_share_a_batch(client):
    """Constrained requests arrive and finish while a long unconstrained answer is generating: they shared its
    steps (grammar masks on their rows only), and the unconstrained answer is the one it gets alone (which
    test_server_api checks against transformers' greedy answer)."""
    long = client.chat.completions.create(
        model="tiny", messages=ASK, temperature=0, max_tokens=450, stream=True
    )
    first = next(long)  # it is running

    def constrained(seed):
        return client.chat.completions.create(
            model="tiny", messages=ASK, temperature=1.0, seed=seed, max_tokens=60, response_format=JSON_SCHEMA
        )

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(constrained, range(3)))
    assert main_server().metrics()['conch_active_slots{model="tiny"}'] == 1  # the long one, still going
    for r in answers:
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    text = "".join(c.choices[0].delta.content or "" for c in [first, *long] if c.choices)
    alone = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=450)
    assert text == alone.choices[0].message.content
