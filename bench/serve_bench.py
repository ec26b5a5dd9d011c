"""Serving benchmark: conch's server against the walkthrough's (bench/reference_server.py), same merged model.

Both get the same closed-loop load (N clients, each sending its next request when the last one is answered) on
GET /generate: same prompts, greedy decoding, same max tokens. Prints requests/s, completion tokens/s, p50 and
p95 latency per server and concurrency, and conch's ratios to the reference.

    .venv/bin/python bench/serve_bench.py --model /tmp/merged-model [--requests-per-client 8] [--threads 2]

Not a test: numbers depend on the machine. Copy the merged model somewhere stable first (the workflow may
rebuild results/ while this runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conch.server.smoke import free_port, running_server  # noqa: E402

QUESTIONS = [
    "Should I {}?",
    "Is it a good idea to {}?",
    "Can I {} today?",
    "Will I {} tomorrow?",
    "我应该{}吗？",
    "Tell me whether to {}.",
    "Oh Magic Conch, should I {}?",
    "Do you think I can {}?",
]
ACTIONS = [
    "ask for a raise",
    "learn Python",
    "go fishing",
    "eat a sandwich",
    "visit the sea",
    "buy a boat",
    "call my friend",
    "sing a song",
    "read a book",
    "plant a tree",
    "paint the fence",
    "take a nap",
    "bake bread",
    "climb a hill",
    "watch the stars",
    "cook dinner",
    "write a letter",
    "ride a bike",
    "clean my room",
    "feed the cat",
    "build a sandcastle",
    "play the clarinet",
    "go jellyfishing",
    "open a restaurant",
    "study for the test",
    "fly a kite",
    "wash the car",
    "adopt a snail",
]


WHEN = ["", " this week", " after lunch", " with my friends"]


def prompt(n: int) -> str:
    """The n-th benchmark question (of 896, all different, so no server can answer a repeat from a cache)."""
    action = (
        ACTIONS[(n // len(QUESTIONS)) % len(ACTIONS)]
        + WHEN[(n // len(QUESTIONS) // len(ACTIONS)) % len(WHEN)]
    )
    return QUESTIONS[n % len(QUESTIONS)].format(action)


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator shares the 2 CPUs with the servers, so it must
    cost far less per request than either server (httpx costs about a millisecond)."""

    def __init__(self, port: int):
        self.port = port
        self.reader = self.writer = None

    async def get_json(self, target: str) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(
            next(
                line.split(b":", 1)[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
        )
        body = json.loads(await self.reader.readexactly(length))
        if status != 200:
            raise RuntimeError(f"{target}: HTTP {status}: {body}")
        return body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def target(prompt: str, max_tokens: int) -> str:
    return "/generate?" + urllib.parse.urlencode({"prompt": prompt, "max_new_tokens": max_tokens})


async def closed_loop(
    port: int, concurrency: int, per_client: int, max_tokens: int, first: int
) -> tuple[float, list, list]:
    """Seconds, latencies and answers of `concurrency` clients sending `per_client` requests each, questions
    numbered from `first`."""
    latencies, answers = [], {}
    connections = [Connection(port) for _ in range(concurrency)]

    async def client(worker: int) -> None:
        for i in range(per_client):
            start = time.perf_counter()
            body = await connections[worker].get_json(
                target(prompt(first + worker * per_client + i), max_tokens)
            )
            latencies.append(time.perf_counter() - start)
            answers[worker, i] = body["generated_text"]

    try:
        # Open connections and warm the server the same way for both before the clock starts.
        await asyncio.gather(
            *(
                c.get_json(target(prompt(first + concurrency * per_client + i), 4))
                for i, c in enumerate(connections)
            )
        )
        start = time.perf_counter()
        await asyncio.gather(*(client(w) for w in range(concurrency)))
        return time.perf_counter() - start, latencies, [answers[k] for k in sorted(answers)]
    finally:
        for c in connections:
            c.close()


def summarize(seconds: float, latencies: list[float], answers: list[str], cpu_s: float, tokenizer) -> dict:
    tokens = sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    latencies = sorted(latencies)
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "req_per_s": len(latencies) / seconds,
        "tok_per_s": tokens / seconds,
        "mean_tokens": tokens / len(latencies),
        "p50_s": statistics.median(latencies),
        "p95_s": latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)],
        # CPU the server process spent per request: what the machine's other load cannot distort much.
        "cpu_ms_per_request": 1000 * cpu_s / len(latencies),
    }


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a server and its child processes (conch runs each model's engine in one)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(p.cpu_times()[:2])
    return total


def server_commands(args, ports: dict[str, int]) -> dict[str, list[str]]:
    py, common = sys.executable, ["--max-new-tokens", str(args.max_tokens), "--threads", str(args.threads)]
    reference = Path(__file__).with_name("reference_server.py")
    return {
        "reference": [py, str(reference), "--model", args.model, "--port", str(ports["reference"]), *common],
        "conch": [
            py,
            "-m",
            "conch.server",
            "--model",
            args.model,
            "--port",
            str(ports["conch"]),
            *common,
            "--max-batch-size",
            str(max(args.concurrency)),
            "--no-access-log",
        ],
    }


def measure(args, log_dir: Path) -> dict:
    """(server, concurrency) -> (seconds, latencies, answers, server CPU seconds), rounds alternating servers."""
    ports = {"reference": free_port(), "conch": free_port()}
    commands = server_commands(args, ports)
    runs = {(kind, c): ([], [], [], []) for kind in commands for c in args.concurrency}
    with contextlib.ExitStack() as stack:
        processes = {
            kind: psutil.Process(
                stack.enter_context(
                    running_server(command, f"http://127.0.0.1:{ports[kind]}", log_dir / f"{kind}.log")
                ).pid
            )
            for kind, command in commands.items()
        }
        first = 0
        for r in range(args.rounds):
            for c in args.concurrency:
                per_client = max(1, args.requests // c)
                for kind in commands:  # the same questions for both servers
                    cpu_before = cpu_seconds(processes[kind])
                    seconds, latencies, answers = asyncio.run(
                        closed_loop(ports[kind], c, per_client, args.max_tokens, first)
                    )
                    run_seconds, run_latencies, run_answers, run_cpu = runs[kind, c]
                    run_seconds.append(seconds)
                    run_latencies.extend(latencies)
                    run_answers.extend(answers)
                    run_cpu.append(cpu_seconds(processes[kind]) - cpu_before)
                    print(
                        f"  round {r + 1} c={c:<3d} {kind:9s} {len(latencies) / seconds:8.2f} req/s",
                        flush=True,
                    )
                first += c * per_client + c
    return runs


def print_table(results: dict, concurrency: list[int]) -> None:
    print(
        "\n| concurrency | server | requests/s | completion tokens/s | p50 latency (s) | p95 latency (s) "
        "| server CPU ms / request |"
    )
    print("|---|---|---|---|---|---|---|")
    for c in concurrency:
        ref, ours = results[f"reference/c={c}"], results[f"conch/c={c}"]
        for kind, r in (("reference", ref), ("conch", ours)):
            print(
                f"| {c} | {kind} | {r['req_per_s']:.1f} | {r['tok_per_s']:.1f} | {r['p50_s']:.3f} "
                f"| {r['p95_s']:.3f} | {r['cpu_ms_per_request']:.1f} |"
            )
        print(
            f"| {c} | conch ÷ reference | **{ours['req_per_s'] / ref['req_per_s']:.2f}×** "
            f"| **{ours['tok_per_s'] / ref['tok_per_s']:.2f}×** | {ours['p50_s'] / ref['p50_s']:.2f}× "
            f"| {ours['p95_s'] / ref['p95_s']:.2f}× "
            f"| {ours['cpu_ms_per_request'] / ref['cpu_ms_per_request']:.2f}× |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="merged model directory")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=48, help="requests per server, concurrency and round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measurements alternate between the servers this many times (evens out noisy neighbours)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each server")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    log_dir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    print(
        f"model {args.model}; max_tokens {args.max_tokens}; torch threads {args.threads}; {args.rounds} rounds "
        f"of {args.requests} requests; {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"logs in {log_dir}",
        flush=True,
    )
    runs = measure(args, log_dir)
    results = {
        f"{kind}/c={c}": summarize(sum(sec), lat, ans, sum(cpu), tokenizer)
        for (kind, c), (sec, lat, ans, cpu) in runs.items()
    }
    same = all(runs["conch", c][2] == runs["reference", c][2] for c in args.concurrency)
    print(f"\ngreedy answers identical between the servers: {same}")
    print_table(results, args.concurrency)
    mean_tokens = results[f"conch/c={args.concurrency[0]}"]["mean_tokens"]
    print(
        f"\nmean completion tokens per request: {mean_tokens:.1f}; load average now {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "identical_answers": same, "results": results}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
