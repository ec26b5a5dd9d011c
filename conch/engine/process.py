"""The engine process: load one model, then serve the pipe from its client (conch.engine.client).

It answers a load with Ready or LoadFailed, then takes SubmitRequest, CancelRequest, StatsRequest and Stop
and sends StepOutputs once per step and destination, StatsReply per StatsRequest (conch.engine.messages).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
from dataclasses import dataclass

from conch.engine.messages import (
    CancelRequest,
    LoadFailed,
    Ready,
    StatsReply,
    StatsRequest,
    StepOutputs,
    Stop,
    SubmitRequest,
)
from conch.engine.request import Completion

log = logging.getLogger("conch.engine")


@dataclass(frozen=True, kw_only=True)
class EngineSpec:
    """What an engine process needs to load and run one model; it crosses to that process as a dict."""

    name: str
    path: str
    adapter: str | None = None
    max_batch_size: int
    max_queue: int
    max_prefill_tokens: int
    context_length: int | None = None
    prefix_cache: bool = True
    threads: int | None = None

    @classmethod
    def from_settings(cls, settings, entry) -> EngineSpec:
        """From the server's settings and one of their models (conch.server.settings: ServeSettings, ModelEntry),
        field by field by name, the model's own fields first; the engine does not import the server's types."""
        values = {}
        for f in dataclasses.fields(cls):
            source = entry if hasattr(entry, f.name) else settings
            values[f.name] = getattr(source, f.name)
        return cls(**values)


def run_engine_process(conn, spec: dict) -> None:
    """The process's main: load the model, then serve the pipe until it closes or says stop."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group; the server shuts this process down itself (stop or pipe EOF).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    from conch.engine.core import Engine
    from conch.model.modeling import load

    spec = EngineSpec(**spec)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        model, tokenizer = load(spec.path, adapter=spec.adapter)
        engine = Engine(
            spec.name,
            model,
            tokenizer,
            max_batch_size=spec.max_batch_size,
            max_prefill_tokens=spec.max_prefill_tokens,
            context_length=spec.context_length,
            prefix_cache=spec.prefix_cache,
        ).start()
    except Exception as exc:
        log.exception("engine %s: loading failed", spec.name)
        conn.send(LoadFailed(f"{type(exc).__name__}: {exc}"))
        return
    lock, requests = threading.Lock(), {}

    def send(message) -> None:
        with lock, contextlib.suppress(OSError):  # the server is gone: nobody to tell
            conn.send(message)

    def post(items) -> None:
        for req, item in items:
            if isinstance(item, Completion):
                requests.pop(req.id, None)
        send(StepOutputs([(req.id, item) for req, item in items]))

    send(Ready(context_length=engine.context_length))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        match message:
            case SubmitRequest():
                m = message
                req = engine.enqueue(m.id, m.prompt_ids, m.params, m.max_tokens, m.stream, post, m.submitted)
                if req.finished is None:
                    requests[m.id] = req
            case CancelRequest(id=rid) if (req := requests.get(rid)) is not None:
                engine.cancel(req)
            case StatsRequest(id=rid):
                send(StatsReply(rid, engine.snapshot()))
            case Stop():
                break
    engine.close()
