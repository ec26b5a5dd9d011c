"""The engine process: load one model, then serve the pipe from its client (conch.engine.client).

Messages in: ("submit", id, prompt ids, sampling params, max tokens, stream, time.monotonic() at submission),
("cancel", id), ("stats", id),
("stop",). Messages out: ("ready", info) or ("error", message) once loaded; ("events", [(id, piece or
Completion), ...]) once per step and destination; ("stats", id, counters).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass

from conch.engine.request import Completion

log = logging.getLogger("conch.engine")


@dataclass
class EngineSpec:
    name: str
    path: str
    adapter: str | None
    max_batch_size: int
    max_queue: int
    max_prefill_tokens: int
    context_length: int | None
    prefix_cache: bool
    threads: int | None


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
            spec.max_batch_size,
            spec.max_prefill_tokens,
            spec.context_length,
            spec.prefix_cache,
        ).start()
    except Exception as exc:
        log.exception("engine %s: loading failed", spec.name)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    lock, requests = threading.Lock(), {}

    def send(message) -> None:
        with lock, contextlib.suppress(OSError):  # the server is gone: nobody to tell
            conn.send(message)

    def post(items) -> None:
        for req, item in items:
            if isinstance(item, Completion):
                requests.pop(req.id, None)
        send(("events", [(req.id, item) for req, item in items]))

    send(("ready", {"context_length": engine.context_length}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "submit":
            _, rid, ids, params, max_tokens, stream, submitted = message
            req = engine.enqueue(rid, ids, params, max_tokens, stream, post, submitted)
            if req.finished is None:
                requests[rid] = req
        elif message[0] == "cancel" and (req := requests.get(message[1])) is not None:
            engine.cancel(req)
        elif message[0] == "stats":
            send(("stats", message[1], engine.snapshot()))
        elif message[0] == "stop":
            break
    engine.close()
