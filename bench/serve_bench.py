"""Serving benchmark: conch, `transformers serve --continuous-batching` and the walkthrough's server, one model.

All three get the same closed-loop load (N clients, each sending its next question when its last one is
answered): distinct chat questions (no repeats a cache could answer), the model's chat template, greedy, the
same `max_tokens`, stopping at the model's end-of-turn token. conch and transformers are asked through
`POST /v1/chat/completions` with `stream: true` (so time to first token is measured); the walkthrough's server
(bench/reference_server.py, a blocking `generate` in an `async def`) only has `GET /generate`, whose first token
arrives with the whole answer. Measurements alternate between the servers in rounds, to even out noisy
neighbours. Prints completion tokens/s, requests/s, p50/p95 latency, p50/p95 time to first token and server CPU
per completion token, and conch's ratios; checks how many greedy answers the servers agree on.

    .venv/bin/python bench/serve_bench.py --model path/to/SmolLM2-135M-Instruct --rounds 2 --threads 1
    .venv/bin/python bench/serve_bench.py --model scratch     # the default config's scratch architecture

Not a test: numbers depend on the machine. Run it alone: `--lock /tmp/conch-timing.lock` holds that lock
exclusively while measuring (the servers load before, without it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import urllib.parse
from pathlib import Path

import psutil

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)
from bench.http_load import Answer, Connection  # noqa: E402
from bench.questions import QUESTIONS, question  # noqa: E402
from conch.server.smoke import free_port, running_server  # noqa: E402

SERVERS = ("reference", "transformers", "conch")


def ask(kind: str, connection: Connection, text: str, max_tokens: int) -> asyncio.Future[Answer]:
    if kind == "reference":
        query = urllib.parse.urlencode({"prompt": text, "max_new_tokens": max_tokens})
        return connection.get_json(f"/generate?{query}")
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0}
    return connection.post_chat("/v1/chat/completions", {**body, "stream": True})


async def closed_loop(kind: str, port: int, clients: int, per_client: int, max_tokens: int, first: int):
    """Seconds and answers (in question order) of `clients` clients sending `per_client` questions each."""
    answers: dict[int, Answer] = {}
    connections = [Connection(port) for _ in range(clients)]

    async def client(worker: int) -> None:
        for i in range(per_client):
            n = first + worker * per_client + i
            answers[n] = await ask(kind, connections[worker], question(n), max_tokens)

    try:
        # Open the connections and warm the server the same way for all before the clock starts.
        warm = first + clients * per_client
        await asyncio.gather(*(ask(kind, c, question(warm + i), 4) for i, c in enumerate(connections)))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(client(w) for w in range(clients)))
        return loop.time() - start, [answers[n] for n in sorted(answers)]
    finally:
        for c in connections:
            c.close()


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of a server and its child processes (conch runs each model's engine in one)."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(p.cpu_times()[:2])
    return total


def server_commands(args, model: str, ports: dict[str, int]) -> dict[str, list[str]]:
    py, tokens, threads = sys.executable, str(args.max_tokens), str(args.threads)
    transformers_cli = str(Path(sys.executable).with_name("transformers"))
    commands = {
        "reference": [py, str(Path(__file__).with_name("reference_server.py")), "--model", model]
        + ["--port", str(ports["reference"]), "--max-new-tokens", tokens, "--threads", threads],
        "transformers": [transformers_cli, "serve", "--continuous-batching", "--device", "cpu", "--dtype"]
        + ["float32", "--host", "127.0.0.1", "--port", str(ports["transformers"]), model],
        "conch": [py, "-m", "conch.server", "--model", model, "--port", str(ports["conch"])]
        + ["--max-new-tokens", tokens, "--threads", threads, "--max-batch-size", str(max(args.concurrency))]
        + ["--no-access-log"],
    }
    return {kind: commands[kind] for kind in args.servers}


@contextlib.contextmanager
def exclusive(path: str):
    """Hold an exclusive flock on `path`: the machine's other timed work waits (and ours waits for it)."""
    with open(path, "a") as handle:
        print(f"  waiting for {path}", flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
        print(f"  holding {path}; load average {os.getloadavg()[0]:.1f}", flush=True)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measure(args, model: str, log_dir: Path) -> tuple[dict, dict]:
    """(server, concurrency) -> [seconds, answers, server CPU seconds] summed over rounds; and the commands."""
    ports = {kind: free_port() for kind in args.servers}
    commands = server_commands(args, model, ports)
    # transformers serve has no thread option: torch takes OMP_NUM_THREADS, as in the others' --threads.
    env = {
        "OMP_NUM_THREADS": str(args.threads),
        "HF_HUB_OFFLINE": "1",
        "CONCH_API_KEY": "",
        "PYTHONPATH": REPO,
    }
    runs = {(kind, c): [0.0, [], 0.0] for kind in commands for c in args.concurrency}
    with contextlib.ExitStack() as stack:
        processes = {}
        for kind, command in commands.items():
            url, log = f"http://127.0.0.1:{ports[kind]}", log_dir / f"{kind}.log"
            processes[kind] = psutil.Process(
                stack.enter_context(running_server(command, url, log, 600, env)).pid
            )
        if args.lock:
            stack.enter_context(exclusive(args.lock))
        first = 0
        for r in range(args.rounds):
            for c, requests in zip(args.concurrency, args.requests, strict=True):
                per_client = max(1, requests // c)
                order = list(commands)[r % len(commands) :] + list(commands)[: r % len(commands)]
                for kind in order:  # the same questions for every server
                    before = cpu_seconds(processes[kind])
                    seconds, answers = asyncio.run(
                        closed_loop(kind, ports[kind], c, per_client, args.max_tokens, first)
                    )
                    run = runs[kind, c]
                    run[0] += seconds
                    run[1] += answers
                    run[2] += cpu_seconds(processes[kind]) - before
                    print(
                        f"  round {r + 1} c={c:<3d} {kind:12s} {len(answers) / seconds:7.2f} req/s "
                        f"(load average {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )
                first += c * per_client + c
    return runs, commands


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, math.ceil(q * len(values)) - 1)]


def summarize(seconds: float, answers: list[Answer], cpu: float, tokenizer) -> dict:
    tokens = sum(len(tokenizer(a.text, add_special_tokens=False)["input_ids"]) for a in answers)
    latencies, firsts = [a.seconds for a in answers], [a.first_token_seconds for a in answers]
    return {
        "requests": len(answers),
        "seconds": seconds,
        "req_per_s": len(answers) / seconds,
        "tok_per_s": tokens / seconds,
        "mean_tokens": tokens / len(answers),
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 0.95),
        "ttft_p50_s": statistics.median(firsts),
        "ttft_p95_s": percentile(firsts, 0.95),
        # CPU the server's processes spent per token: what the machine's other load distorts least.
        "cpu_ms_per_token": 1000 * cpu / max(tokens, 1),
    }


def print_table(results: dict, args) -> None:
    print(
        "\n| clients | server | completion tokens/s | requests/s | p50 (s) | p95 (s) | TTFT p50 (s) "
        "| TTFT p95 (s) | server CPU ms / token |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for c in args.concurrency:
        for kind in args.servers:
            r = results[f"{kind}/c={c}"]
            print(
                f"| {c} | {kind} | {r['tok_per_s']:.1f} | {r['req_per_s']:.2f} | {r['p50_s']:.3f} | {r['p95_s']:.3f} "
                f"| {r['ttft_p50_s']:.3f} | {r['ttft_p95_s']:.3f} | {r['cpu_ms_per_token']:.1f} |"
            )
    if "conch" not in args.servers:
        return
    print()
    for c in args.concurrency:
        ours = results[f"conch/c={c}"]
        for kind in (k for k in args.servers if k != "conch"):
            theirs = results[f"{kind}/c={c}"]
            print(
                f"c={c}: conch ÷ {kind}: tokens/s {ours['tok_per_s'] / theirs['tok_per_s']:.2f}×, "
                f"p50 latency {ours['p50_s'] / theirs['p50_s']:.2f}×, "
                f"TTFT p50 {ours['ttft_p50_s'] / theirs['ttft_p50_s']:.2f}×"
            )


def agreement(runs: dict, args) -> dict:
    """Per server and concurrency: the share of greedy answers equal to the first server's."""
    base = args.servers[0]
    return {
        f"{kind}/c={c}": statistics.mean(
            a.text.strip() == b.text.strip() for a, b in zip(runs[kind, c][1], runs[base, c][1], strict=True)
        )
        for kind in args.servers[1:]
        for c in args.concurrency
    }


def scratch_model(directory: Path) -> str:
    """The default config's scratch architecture, random init, its tokenizer trained on the questions."""
    import yaml

    from conch.model.scratch import build_scratch_model

    config = yaml.safe_load((Path(REPO) / "config" / "config.yaml").read_text())
    scratch = dict(config["base_model"]["scratch"])
    records = [
        {"messages": [{"role": "user", "content": question(n)}, {"role": "assistant", "content": "Maybe."}]}
        for n in range(QUESTIONS)
    ]
    seed, vocab_size = scratch.pop("seed"), scratch.pop("vocab_size")
    train = config["train"]
    build_scratch_model(
        records,
        directory,
        arch=scratch,
        vocab_size=vocab_size,
        seed=seed,
        template=config["template"],
        default_system=train.get("default_system"),
    )
    return str(directory)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="model directory, or `scratch`")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="clients (closed loop)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument(
        "--requests",
        type=int,
        nargs="+",
        default=[8, 32],
        help="requests per server and round, one number per concurrency (or one for all)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="measurements alternate between servers this often"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each server")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--lock", help="take an exclusive flock on this file for the measurements only (not while loading)"
    )
    args = parser.parse_args()
    if len(args.requests) == 1:
        args.requests *= len(args.concurrency)
    if len(args.requests) != len(args.concurrency):
        parser.error("--requests takes one number, or one per --concurrency")

    from transformers import AutoTokenizer

    log_dir = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    model = scratch_model(log_dir / "scratch-model") if args.model == "scratch" else args.model
    tokenizer = AutoTokenizer.from_pretrained(model)
    print(
        f"model {args.model}; max_tokens {args.max_tokens}; torch threads {args.threads}; {args.rounds} rounds of "
        f"{args.requests} requests; {psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; logs in "
        f"{log_dir}",
        flush=True,
    )
    runs, commands = measure(args, model, log_dir)
    results = {
        f"{kind}/c={c}": summarize(seconds, answers, cpu, tokenizer)
        for (kind, c), (seconds, answers, cpu) in runs.items()
    }
    agree = agreement(runs, args)
    print(
        f"\ngreedy answers equal to {args.servers[0]}'s: "
        + ", ".join(f"{k} {v:.0%}" for k, v in agree.items())
    )
    print_table(results, args)
    print(f"\nload average now {os.getloadavg()[0]:.1f}")
    if args.json:
        record = {"args": vars(args), "commands": commands, "agreement": agree, "results": results}
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.model == "scratch":
        shutil.rmtree(log_dir / "scratch-model", ignore_errors=True)


if __name__ == "__main__":
    main()
