"""The server under hostile traffic: fuzzed from its own OpenAPI spec, soaked with malformed and cancelled
requests at concurrency 32, and stopped with SIGTERM while requests are in flight.

Real server processes on loopback ports (tests/test_server_support.py), real HTTP clients. The fuzzing is
property-based (schemathesis + Hypothesis): a failure prints a curl command that reproduces it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import time

import httpx
import psutil
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_server_support import start_server, tiny_model

from conch.engine.sampling import SamplingParams, sample_row
from conch.server.route_table import ROUTES

ASK = [{"role": "user", "content": "Who are you?"}]
OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/v1/models"),
    ("GET", "/generate"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
]
TAKES_INPUT = {"/generate", "/v1/chat/completions", "/v1/completions"}


def tiny_server(name: str, *extra: str):
    return start_server(name, ["--model", tiny_model(), "--name", "tiny", *extra])


def busy_slots(server) -> tuple[float, float]:
    m = server.metrics()
    return m['conch_active_slots{model="tiny"}'], m['conch_queue_depth{model="tiny"}']


# ---- fuzzing from the OpenAPI spec ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzzed():
    return tiny_server("faults-fuzz", "--max-new-tokens", "4")


@pytest.fixture(scope="module")
def spec(fuzzed):
    return schemathesis.openapi.from_url(f"{fuzzed.base_url}/openapi.json")


@pytest.mark.slow
def test_the_spec_lists_every_endpoint(fuzzed):
    paths = httpx.get(f"{fuzzed.base_url}/openapi.json", timeout=10).json()["paths"]
    listed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert listed == set(OPERATIONS)
    assert {path for _, path in OPERATIONS} == ROUTES - {"/"}  # the chat page is HTML, not API


# Negative cases only where there are parameters to break.
FUZZ_CASES = [
    pytest.param(operation, mode, id=f"{' '.join(operation)}-{mode.value}")
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation in OPERATIONS
    if mode is GenerationMode.POSITIVE or operation[1] in TAKES_INPUT
]


@pytest.mark.slow
@pytest.mark.parametrize(("operation", "mode"), FUZZ_CASES)
def test_fuzzed_requests_never_get_a_server_error(spec, operation, mode):
    """Valid inputs (positive) and inputs that break the spec (negative): any status but 5xx."""
    method, path = operation
    statuses = collections.Counter()

    @given(case=spec[path][method].as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        statuses[case.call_and_validate(checks=[not_a_server_error], timeout=60).status_code] += 1

    check()
    # Broken inputs are mostly refused (a query value of the wrong type is still a valid string).
    wanted = range(400, 500) if mode is GenerationMode.NEGATIVE else (200,)
    assert any(status in wanted for status in statuses), statuses


def chat_json(content: str = '"hi"', extra: str = "") -> str:
    """A chat body as raw JSON text: `content` and `extra` are spliced in as written."""
    return f'{{"model": "tiny", "messages": [{{"role": "user", "content": {content}}}]{extra}}}'


HOSTILE = {
    # id: (path, raw JSON body, status, the param the error names)
    "lone-surrogate-chat": ("/v1/chat/completions", chat_json('"lone \\ud800 surrogate"'), 400, "messages"),
    "lone-surrogate-prompt": ("/v1/completions", '{"model": "tiny", "prompt": "\\udfff"}', 400, "prompt"),
    "nan": ("/v1/chat/completions", chat_json(extra=', "temperature": NaN'), 422, "temperature"),
    "underflow": ("/v1/chat/completions", chat_json(extra=', "top_p": 1e-400'), 422, "top_p"),
    "overflow": ("/v1/chat/completions", chat_json(extra=', "temperature": 1e999999'), 422, "temperature"),
    "seed-2**64": ("/v1/chat/completions", chat_json(extra=f', "seed": {2**64}'), 422, "seed"),
    "max_tokens-2**70": ("/v1/chat/completions", chat_json(extra=f', "max_tokens": {2**70}'), 200, None),
    "deep-nesting": ("/v1/chat/completions", '{"messages": ' + "[" * 5000 + "]" * 5000 + "}", 400, None),
    "null": ("/v1/chat/completions", "null", 422, None),
    "empty": ("/v1/chat/completions", "", 422, None),
    "beyond-context": ("/v1/chat/completions", chat_json('"' + "word " * 20000 + '"'), 400, "messages"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_bodies_get_a_clear_answer(fuzzed, case):
    """Cases the fuzzer does not reach on its own: raw JSON no client library would send."""
    path, body, status, param = HOSTILE[case]
    r = httpx.post(
        fuzzed.base_url + path,
        content=body.encode("utf-8", "surrogatepass"),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == status, r.text
    if status != 200:
        assert r.json()["error"]["param"] == param and r.json()["error"]["message"], r.text


@pytest.mark.slow
def test_a_chunked_body_over_the_limit_is_refused(fuzzed):
    """No Content-Length to refuse up front: the server counts the bytes as they arrive."""

    def body():
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        yield from (b"x" * 65536 for _ in range(20))  # 1.25 MiB, over the 1 MiB default
        yield b'"}]}'

    r = httpx.post(
        f"{fuzzed.base_url}/v1/chat/completions",
        content=body(),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("top_p", [1e-30, 1e-46, 5e-324])
def test_a_vanishing_top_p_samples_the_most_likely_token(top_p):
    """Found by the fuzzer: a top_p that float32 rounds to 0 once left no token to draw (a 500)."""
    logits = torch.tensor([0.0, 3.0, 1.0, -2.0])
    assert sample_row(logits, SamplingParams(temperature=1.0, top_p=top_p), torch.Generator()) == 1


@pytest.mark.slow
def test_the_fuzzed_server_is_healthy_and_idle(fuzzed, spec):
    assert httpx.get(f"{fuzzed.base_url}/health", timeout=10).json()["status"] == "ok"
    fuzzed.wait_idle()


# ---- soak: thousands of requests, malformed and cancelled ones mixed in ----------------------------------------
CONCURRENCY = 32
WARMUP, SOAK = 400, 3000
SOAK_SECONDS = 420  # a cap, so a slow machine ends the soak rather than the CI job


def _body(**fields) -> dict:
    return {"model": "tiny", "messages": ASK, "max_tokens": 8, **fields}


def soak_plan(n: int, rng: random.Random) -> list[tuple[str, dict]]:
    """n requests: (kind, httpx request arguments); kinds starting with `bad` must get a 4xx."""
    prompts = ["Who are you?", "你是谁？", "Should I sleep now?", "Tell me about the sea. " * 5]

    def ask():
        return [{"role": "user", "content": f"{rng.choice(prompts)} #{rng.randrange(10**6)}"}]

    makers = {
        "chat": lambda: {"json": _body(messages=ask(), temperature=rng.choice([0, 0.7, 1.3]), top_p=0.9)},
        "completion": lambda: {
            "url": "/v1/completions",
            "json": {"model": "tiny", "prompt": rng.choice(prompts), "max_tokens": rng.randint(1, 8)},
        },
        "generate": lambda: {"method": "GET", "url": "/generate", "params": {"prompt": rng.choice(prompts)}},
        "stream": lambda: {"json": _body(messages=ask(), stream=True)},
        "stream_hangup": lambda: {"json": _body(messages=ask(), stream=True, max_tokens=64)},
        "hangup": lambda: {"json": _body(messages=ask(), max_tokens=64)},
        "bad_json": lambda: {"content": b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"'},
        "bad_utf8": lambda: {
            "content": b'{"model": "tiny", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
        },
        "bad_type": lambda: {"json": _body(max_tokens="lots")},
        "bad_field": lambda: {"json": _body(logit_bias={"1": 5})},
        "bad_model": lambda: {"json": _body(model="../../etc/passwd")},
        "bad_role": lambda: {"json": _body(messages=[{"role": "wizard", "content": "hi"}])},
        "bad_size": lambda: {"json": _body(messages=[{"role": "user", "content": "x" * (1 << 20)}])},
        "bad_method": lambda: {"method": "DELETE", "url": "/v1/chat/completions"},
        "bad_path": lambda: {"method": "GET", "url": "/v1/../../etc/passwd"},
    }
    weights = {"chat": 8, "completion": 3, "generate": 2, "stream": 3, "stream_hangup": 3, "hangup": 3}
    kinds = list(makers)
    chosen = rng.choices(kinds, weights=[weights.get(k, 1) for k in kinds], k=n)
    return [(kind, makers[kind]()) for kind in chosen]


async def _send(http: httpx.AsyncClient, kind: str, args: dict, rng: random.Random) -> int | str:
    method = args.pop("method", "POST")
    url = args.pop("url", "/v1/chat/completions")
    if kind == "hangup":  # the client gives up before the answer: the connection closes under the server
        try:
            r = await asyncio.wait_for(http.request(method, url, **args), timeout=rng.uniform(0.001, 0.05))
            return r.status_code
        except TimeoutError:
            return "hung up"
    if kind.startswith("stream"):
        async with http.stream(method, url, **args) as r:
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if kind == "stream_hangup" and len(lines) >= 2:
                    return "hung up"
            if r.status_code == 200 and "data: [DONE]" not in lines:
                return "stream cut short"
            return r.status_code
    return (await http.request(method, url, **args)).status_code


async def _run(base_url: str, plan: list, deadline: float, rng: random.Random) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()
    queue = collections.deque(plan)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:

        async def worker():
            while queue and time.monotonic() < deadline:
                kind, args = queue.popleft()
                outcomes[(kind, await _send(http, kind, args, rng))] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return outcomes


def _rss(pid: int) -> dict[int, int]:
    """Resident memory of the server process and of each engine process (each model runs in its own)."""
    server = psutil.Process(pid)
    return {p.pid: p.memory_info().rss for p in (server, *server.children(recursive=True))}


@pytest.mark.slow
def test_soak_with_malformed_and_cancelled_requests():
    server = tiny_server("faults-soak", "--max-new-tokens", "64", "--no-access-log")
    rng = random.Random(8)
    deadline = time.monotonic() + SOAK_SECONDS
    warm = asyncio.run(_run(server.base_url, soak_plan(WARMUP, rng), deadline, rng))
    server.wait_idle()
    before = _rss(server.proc.pid)
    started = time.monotonic()
    outcomes = asyncio.run(_run(server.base_url, soak_plan(SOAK, rng), deadline, rng))
    seconds = time.monotonic() - started
    # A hangup can end as a status (the answer beat the client's timeout) or as "hung up": mixed types, so
    # sort by their text.
    print(f"soak: {sum(outcomes.values())} requests in {seconds:.0f}s; {sorted(outcomes.items(), key=str)}")

    done = sum(outcomes.values())
    assert done >= SOAK // 2, f"only {done} of {SOAK} requests in {SOAK_SECONDS}s: {outcomes}"
    for (kind, outcome), n in sorted({**warm, **outcomes}.items(), key=str):
        if kind.startswith("bad"):
            assert isinstance(outcome, int) and 400 <= outcome < 500, (kind, outcome, n)
        else:
            assert outcome in (200, "hung up"), (kind, outcome, n)
    assert outcomes[("stream_hangup", "hung up")] and outcomes[("hangup", "hung up")]

    m = server.wait_idle(timeout=30)  # no slot or queue place is left behind by any of them
    assert m['conch_engine_events_total{model="tiny",event="finished_cancelled"}'] > 0
    assert m['conch_engine_events_total{model="tiny",event="finished_error"}'] == 0
    assert httpx.get(f"{server.base_url}/health", timeout=10).json()["status"] == "ok"
    r = httpx.post(f"{server.base_url}/v1/chat/completions", json=_body(temperature=0), timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
    after = _rss(server.proc.pid)
    mib = {pid: (before[pid] >> 20, after.get(pid, 0) >> 20) for pid in before}
    print(f"soak: RSS in MiB after warm-up and after the soak, by process: {mib}")
    assert set(after) == set(before), "a server or engine process came or went"
    for pid, rss in after.items():
        assert rss <= before[pid] * 1.10, f"process {pid}: RSS grew from {mib[pid][0]} to {mib[pid][1]} MiB"


# ---- graceful shutdown -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish():
    server = tiny_server("faults-shutdown", "--max-new-tokens", "400")
    body = _body(max_tokens=400, temperature=0)

    async def in_flight():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as http:

            async def plain():
                try:
                    r = await http.post("/v1/chat/completions", json=body)
                    return r.status_code, r.json()["choices"][0]["finish_reason"]
                except (httpx.HTTPError, ValueError) as exc:
                    return "cut short", repr(exc)

            async def streamed():
                try:
                    async with http.stream(
                        "POST", "/v1/chat/completions", json={**body, "stream": True}
                    ) as r:
                        lines = [line async for line in r.aiter_lines() if line]
                except httpx.HTTPError as exc:
                    return "cut short", repr(exc)
                if lines[-1:] != ["data: [DONE]"]:
                    return "cut short", lines[-1:]
                return r.status_code, json.loads(lines[-2][6:])["choices"][0]["finish_reason"]

            tasks = [asyncio.create_task(f()) for f in (plain, plain, plain, streamed, streamed, streamed)]
            while busy_slots(server)[0] < len(tasks):
                await asyncio.sleep(0.02)
            os.kill(server.proc.pid, signal.SIGTERM)
            await asyncio.sleep(1)
            refused = None
            if not any(task.done() for task in tasks):  # still generating: a newcomer must be turned away
                async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as newcomer:
                    try:
                        await newcomer.get("/health")
                        refused = False
                    except httpx.ConnectError:
                        refused = True
            return await asyncio.gather(*tasks), refused

    results, refused = asyncio.run(in_flight())
    assert {status for status, _ in results} == {200}, results
    assert {reason for _, reason in results} <= {"length", "stop"}, results  # none cut short
    assert refused is not False, "a new connection was accepted after SIGTERM"
    # uvicorn re-raises the signal once it has shut down cleanly, so the exit status says SIGTERM.
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    log = server.log.read_text(encoding="utf-8")
    assert "Application shutdown complete" in log and "Finished server process" in log
    assert "Traceback" not in log
