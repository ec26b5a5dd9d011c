"""Prometheus text exposition (format 0.0.4) for the few series conch keeps; no client library needed.

Gauges for slots and queues are read from the engines at scrape time, so they cannot drift from the truth; a
soak test can assert they return to zero.
"""

from __future__ import annotations

import collections
import threading

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**labels) -> str:
    if not labels:
        return ""
    escaped = (
        f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + ",".join(escaped) + "}"


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = collections.Counter()  # (path, status) -> count
        self.latency_counts: dict[str, list[int]] = {}
        self.latency_sum = collections.Counter()

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(path, status)] += 1
            counts = self.latency_counts.setdefault(path, [0] * (len(LATENCY_BUCKETS) + 1))
            counts[
                next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))
            ] += 1
            self.latency_sum[path] += seconds

    def render(self, engines: dict, stats: dict[str, dict]) -> str:
        """The exposition; `stats` holds each engine's counters and slot gauges (empty if it did not answer)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("conch_requests_total", "counter", "HTTP requests answered, by route and status code.")
            for (path, status), n in sorted(self.requests.items()):
                out.append(f"conch_requests_total{_labels(path=path, status=status)} {n}")
            family("conch_request_latency_seconds", "histogram", "Time from request to last byte, by route.")
            for path, counts in sorted(self.latency_counts.items()):
                running = 0
                for bound, n in zip((*LATENCY_BUCKETS, "+Inf"), counts, strict=True):
                    running += n
                    out.append(
                        f"conch_request_latency_seconds_bucket{_labels(path=path, le=bound)} {running}"
                    )
                out.append(
                    f"conch_request_latency_seconds_sum{_labels(path=path)} {self.latency_sum[path]:.6f}"
                )
                out.append(f"conch_request_latency_seconds_count{_labels(path=path)} {running}")
        gauges = {
            "conch_queue_depth": ("Requests waiting for a batch slot.", lambda e, st: st.get("queue_depth")),
            "conch_active_slots": ("Batch slots generating now.", lambda e, st: st.get("active")),
            "conch_batch_slots": ("Batch slots in all (max batch size).", lambda e, st: e.max_batch_size),
            "conch_queue_limit": (
                "Queued requests beyond which new ones get 503.",
                lambda e, st: e.max_queue,
            ),
        }
        for name, (help_text, read) in gauges.items():
            family(name, "gauge", help_text)
            for model, engine in engines.items():
                if (value := read(engine, stats[model])) is not None:
                    out.append(f"{name}{_labels(model=model)} {value}")
        family(
            "conch_engine_events_total",
            "counter",
            "Engine work: forward passes, tokens and rows, seconds busy, finished requests by reason.",
        )
        for model, events in stats.items():
            for event, n in sorted(events.items()):
                if event not in ("active", "queue_depth", "prompt_tokens", "completion_tokens"):
                    out.append(f"conch_engine_events_total{_labels(model=model, event=event)} {n:g}")
        for kind in ("prompt", "completion"):
            family(
                f"conch_{kind}_tokens_total",
                "counter",
                f"{kind.capitalize()} tokens of finished requests, by model.",
            )
            for model, events in stats.items():
                if f"{kind}_tokens" in events:
                    out.append(
                        f"conch_{kind}_tokens_total{_labels(model=model)} {events[f'{kind}_tokens']:g}"
                    )
        return "\n".join(out) + "\n"
