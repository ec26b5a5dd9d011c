"""The server through real clients: the official openai package (streaming and not), curl, and httpx.

One real server process on a loopback port serves a tiny random model ("tiny") and the same model with a LoRA
adapter applied unmerged ("tiny-lora"). Greedy answers are compared with `conch.model.modeling.generate` offline.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time

import httpx
import openai
import pytest
from test_server_support import main_server, offline_greedy, streamed_chat

from conch.server.smoke import smoke_test

ASK = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def server():
    return main_server()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_smoke_contract_of_the_serve_rule(server):
    """The `serve` rule's check: /generate and chat answers equal the offline greedy answer."""
    expected = offline_greedy(ASK, 24)
    record = smoke_test(server.base_url, "tiny", "Who are you?", expected, 24)
    assert record["passed"], record["checks"]


def test_openai_chat_matches_offline_greedy(client):
    r = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=20)
    assert r.object == "chat.completion" and r.model == "tiny"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == offline_greedy(ASK, 20)
    # The random model never says end-of-turn this early: the token budget ends the answer.
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 20 and r.usage.prompt_tokens > 10
    assert r.usage.total_tokens == r.usage.prompt_tokens + 20


def test_openai_stream_concatenates_to_the_same_answer(client):
    chunks = streamed_chat(client, model="tiny", messages=ASK, temperature=0, max_tokens=40)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == offline_greedy(ASK, 40)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 40


def test_sse_wire_format_ends_with_done(server):
    # Greedy: the tiny model runs past 5 tokens then (as the test above shows at 40), so `length` is certain;
    # sampled, it could draw its end-of-turn token and stop.
    body = {"model": "tiny", "messages": ASK, "max_tokens": 5, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_openai_completions_streaming_and_not(client):
    plain = client.completions.create(model="tiny", prompt="Once upon a time", temperature=0, max_tokens=12)
    assert plain.object == "text_completion" and plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 12
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny", prompt="Once upon a time", temperature=0, max_tokens=12, stream=True
        )
        if c.choices
    )
    assert streamed == plain.choices[0].text != ""


def test_stop_strings_end_the_answer_and_are_not_returned(client):
    full = client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=40)
    text = full.choices[0].message.content
    stop = text[8:11]  # a piece from the middle of what the model is going to say
    assert stop.strip() and stop in text
    for stream in (False, True):
        if stream:
            got = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="tiny",
                    messages=ASK,
                    temperature=0,
                    max_tokens=40,
                    stop=[stop, "never-said"],
                    stream=True,
                )
            )
        else:
            r = client.chat.completions.create(
                model="tiny", messages=ASK, temperature=0, max_tokens=40, stop=stop
            )
            got = r.choices[0].message.content
            assert r.choices[0].finish_reason == "stop"
        assert got == text[: text.index(stop)].rstrip()


def test_seeded_sampling_repeats_and_differs_from_greedy(client):
    def sample(seed):
        return (
            client.chat.completions.create(
                model="tiny", messages=ASK, temperature=1.0, top_p=0.9, seed=seed, max_tokens=24
            )
            .choices[0]
            .message.content
        )

    first, again, other = sample(7), sample(7), sample(8)
    assert first == again
    assert first != other or first != offline_greedy(ASK, 24)


def test_curl_generate_is_walkthrough_compatible(server):
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-G",
            f"{server.base_url}/generate",
            "--data-urlencode",
            "prompt=Who are you?",
            "--data-urlencode",
            "max_new_tokens=16",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == {"generated_text": offline_greedy(ASK, 16)}


def test_models_health_and_metrics(server, client):
    assert sorted(m.id for m in client.models.list().data) == ["tiny", "tiny-lora"]
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok", "models": ["tiny", "tiny-lora"]}
    before = server.wait_idle()
    client.chat.completions.create(model="tiny", messages=ASK, temperature=0, max_tokens=20)
    m = server.wait_idle()
    assert m['conch_requests_total{path="/v1/chat/completions",status="200"}'] >= 1
    assert m['conch_completion_tokens_total{model="tiny"}'] >= 20
    assert m['conch_request_latency_seconds_count{path="/v1/chat/completions"}'] >= 1
    assert m['conch_batch_slots{model="tiny"}'] == 16 and m['conch_queue_depth{model="tiny"}'] == 0

    def added(series):
        return m[series] - before.get(series, 0)

    # Token timing histograms: one time to first token and queue time per request, a gap between every two tokens.
    assert added('conch_time_to_first_token_seconds_count{model="tiny"}') == 1
    assert added('conch_queue_time_seconds_count{model="tiny"}') == 1
    assert added('conch_inter_token_latency_seconds_count{model="tiny"}') == 19
    assert 0 < added('conch_time_to_first_token_seconds_sum{model="tiny"}') < 10
    assert (
        m['conch_inter_token_latency_seconds_bucket{model="tiny",le="+Inf"}']
        == (m['conch_inter_token_latency_seconds_count{model="tiny"}'])
    )
    text = httpx.get(f"{server.base_url}/metrics").text
    assert "# TYPE conch_time_to_first_token_seconds histogram" in text
    assert "# TYPE conch_engine_events_total counter" in text


def test_adapter_served_unmerged_matches_peft_offline(client):
    lora = client.chat.completions.create(model="tiny-lora", messages=ASK, temperature=0, max_tokens=24)
    assert lora.choices[0].message.content == offline_greedy(ASK, 24, adapter=True)
    assert lora.choices[0].message.content != offline_greedy(ASK, 24)  # the adapter really is applied
    assert lora.model == "tiny-lora"


def test_concurrent_requests_share_forward_passes_and_keep_their_own_settings(server, client):
    prompts = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(12)]
    before = server.metrics()

    def ask(i):
        return client.chat.completions.create(
            model="tiny", messages=prompts[i], temperature=0, max_tokens=10 + i
        )

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(ask, range(12)))
    after = server.wait_idle()
    for i, r in enumerate(answers):
        assert r.usage.completion_tokens == 10 + i  # each its own budget
        assert r.choices[0].message.content == offline_greedy(prompts[i], 10 + i)
    rows = (
        after['conch_engine_events_total{model="tiny",event="decode_rows"}']
        - before['conch_engine_events_total{model="tiny",event="decode_rows"}']
    )
    passes = (
        after['conch_engine_events_total{model="tiny",event="decode_passes"}']
        - before['conch_engine_events_total{model="tiny",event="decode_passes"}']
    )
    assert rows / passes > 2, f"{rows} rows in {passes} decode passes: requests were not batched"


def test_generation_does_not_block_the_event_loop(server):
    body = {"model": "tiny", "messages": ASK, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)
        started = time.perf_counter()
        health = httpx.get(f"{server.base_url}/health", timeout=10)
        waited = time.perf_counter() - started
        rest = [line for line in lines if line]
    assert health.status_code == 200
    assert rest[-1] == "data: [DONE]"
    assert waited < 0.5, f"/health took {waited:.2f}s while a generation was running"


def test_client_disconnect_frees_the_slot(server):
    server.wait_idle()
    before = server.metrics()
    body = {"model": "tiny", "messages": ASK, "max_tokens": 450, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # first piece of text: the request is generating; now hang up
    after = server.wait_idle(timeout=5)
    cancelled = 'conch_engine_events_total{model="tiny",event="finished_cancelled"}'
    tokens = 'conch_completion_tokens_total{model="tiny"}'
    answered = 'conch_requests_total{path="/v1/chat/completions",status="200"}'
    assert after[cancelled] == before.get(cancelled, 0) + 1
    assert 0 < after[tokens] - before.get(tokens, 0) < 450  # stopped well before its budget
    assert after[answered] == before.get(answered, 0) + 1  # the cut stream is still counted


def test_non_streaming_disconnect_frees_the_slot(server):
    cancelled = 'conch_engine_events_total{model="tiny",event="finished_cancelled"}'
    # A sampled answer can reach end-of-turn before the client gives up; try seeds until one is cut off.
    for seed in range(10):
        server.wait_idle()
        before = server.metrics()
        body = {"model": "tiny", "messages": ASK, "max_tokens": 450, "seed": seed}
        try:
            httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=0.3)
        except httpx.ReadTimeout:
            break
    else:
        pytest.fail("every answer finished within 0.3 s, so no disconnect could be made")
    after = server.wait_idle(timeout=5)
    assert after[cancelled] == before.get(cancelled, 0) + 1
