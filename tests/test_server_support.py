"""Shared by the server tests: a tiny scratch model, a LoRA adapter for it, and real servers on loopback ports.

Each is built or started once per test session (these helpers memoise; pytest fixtures in different modules
would not share a session-scoped instance) and stopped when the session ends.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from conch.server.smoke import free_port, running_server

RECORDS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in [
        ("Who are you?", "I am the Magic Conch."),
        ("你是谁？", "我是神奇海螺。"),
        ("Should I sleep now?", "Yes."),
        ("What is the sea like?", "Deep, blue and full of fish."),
    ]
]
ARCH = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
CONTEXT = ARCH["max_position_embeddings"]
API_KEY = "test-key-7f3a9c"

_ROOT = Path(tempfile.mkdtemp(prefix="conch-server-tests-"))
_SERVERS = contextlib.ExitStack()


@atexit.register
def _cleanup() -> None:
    _SERVERS.close()
    shutil.rmtree(_ROOT, ignore_errors=True)


@functools.cache
def tiny_model() -> str:
    """A random-init Qwen2 (it babbles, but through every real code path) with the qwen chat template."""
    from conch.model.scratch import build_scratch_model

    out = _ROOT / "model"
    build_scratch_model(
        RECORDS,
        out,
        arch=ARCH,
        vocab_size=400,
        seed=0,
        template="qwen",
        default_system="You are a helpful assistant.",
    )
    return str(out)


@functools.cache
def tiny_adapter() -> str:
    """A LoRA adapter for the tiny model with random (non-zero) B matrices, so it visibly changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model(), dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    out = _ROOT / "adapter"
    get_peft_model(base, config).save_pretrained(out)
    return str(out)


def _canonical(series: str) -> str:
    """A series name with its labels in sorted order (Prometheus does not order them)."""
    name, _, labels = series.partition("{")
    pairs = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels))
    return name + ("{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}" if pairs else "")


class Series(dict):
    """Metric values by series, e.g. 'conch_active_slots{model="tiny"}' -> 0.0; label order does not matter."""

    def __getitem__(self, series: str) -> float:
        return super().__getitem__(_canonical(series))

    def get(self, series: str, default=None):
        return super().get(_canonical(series), default)


class Server:
    def __init__(self, base_url: str, log: Path, proc: subprocess.Popen):
        self.base_url, self.log, self.proc = base_url, log, proc

    def metrics(self) -> Series:
        """The /metrics exposition, parsed (needs the key on keyed servers)."""
        r = httpx.get(f"{self.base_url}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        r.raise_for_status()
        return Series(
            (_canonical(k), float(v))
            for k, v in (line.rsplit(" ", 1) for line in r.text.splitlines() if line[:1] != "#")
        )

    def wait_idle(self, model: str = "tiny", timeout: float = 10.0) -> Series:
        """Metrics once no slot is busy and nothing is queued (fails the test if that never happens)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if (
                m[f'conch_active_slots{{model="{model}"}}'] == 0
                and m[f'conch_queue_depth{{model="{model}"}}'] == 0
            ):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"slots still busy after {timeout}s: {m}")
            time.sleep(0.05)


def start_server(name: str, args: list[str], env: dict | None = None) -> Server:
    port = free_port()
    log = _ROOT / f"{name}.log"
    command = [sys.executable, "-m", "conch.server", "--port", str(port), "--threads", "1", *args]
    env = {**os.environ, "CONCH_API_KEY": "", **(env or {})}
    proc = _SERVERS.enter_context(running_server(command, f"http://127.0.0.1:{port}", log, env=env))
    return Server(f"http://127.0.0.1:{port}", log, proc)


@functools.cache
def main_server() -> Server:
    """Two models: the tiny merged model ("tiny") and base + adapter unmerged ("tiny-lora"); no API key."""
    config = _ROOT / "serve.yaml"
    config.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "tiny", "path": tiny_model()},
                    {"name": "tiny-lora", "path": tiny_model(), "adapter": tiny_adapter()},
                ],
                "max_new_tokens": 480,
                "max_batch_size": 16,
                "max_queue": 64,
            }
        )
    )
    return start_server("main", ["--config", str(config)])


@functools.cache
def guarded_server() -> Server:
    """An API key, one batch slot and a one-request queue: for auth and back-pressure tests."""
    return start_server(
        "guarded",
        [
            "--model",
            tiny_model(),
            "--name",
            "tiny",
            "--max-new-tokens",
            "480",
            "--max-batch-size",
            "1",
            "--max-queue",
            "1",
        ],
        env={"CONCH_API_KEY": API_KEY},
    )


@functools.cache
def offline():
    """The tiny model and its tokenizer, loaded the way the server loads them."""
    from conch.model.modeling import load

    return load(tiny_model())


@functools.cache
def offline_lora():
    from conch.model.modeling import load

    return load(tiny_model(), adapter=tiny_adapter())


def offline_greedy(messages: list[dict], max_tokens: int, adapter: bool = False) -> str:
    """What `conch.model.modeling.generate` answers offline: the server's greedy answers must equal it."""
    from conch.model.modeling import generate, render

    model, tokenizer = offline_lora() if adapter else offline()
    return generate(model, tokenizer, [render(tokenizer, messages)], max_tokens)[0]


def streamed_chat(client, **body) -> list:
    """Every chunk of a streamed chat completion (openai client), usage chunk included."""
    return list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
