"""/metrics through prometheus_client: request counts and latency, per-model token timing, engine counters.

Histograms of time to first token, inter-token latency and queue time are observed from the timings each
request's engine reports when it finishes (measured in the engine process from the moment the server submitted
the request, on the machine's monotonic clock). Slot and queue gauges and the engine's counters are read from
the engines at scrape time, so they cannot drift from the truth; a soak test can assert the gauges return to
zero.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from conch.engine import Completion

# `_created` series (a timestamp per label set) would double the exposition for nothing a dashboard uses.
prometheus_client.disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# Engine counters exposed as their own series rather than as events.
_OWN_SERIES = ("active", "queue_depth", "prompt_tokens", "completion_tokens")


class _EngineCollector:
    """Gauges and counters read from the engines at scrape time (set just before each exposition)."""

    def __init__(self):
        self.engines: dict = {}
        self.stats: dict[str, dict] = {}

    def collect(self):
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
            family = GaugeMetricFamily(name, help_text, labels=["model"])
            for model, engine in self.engines.items():
                if (value := read(engine, self.stats.get(model, {}))) is not None:
                    family.add_metric([model], value)
            yield family
        events = CounterMetricFamily(
            "conch_engine_events",
            "Engine work: forward passes, tokens and rows, seconds busy, finished requests by reason.",
            labels=["model", "event"],
        )
        tokens = {
            kind: CounterMetricFamily(
                f"conch_{kind}_tokens",
                f"{kind.capitalize()} tokens of finished requests, by model.",
                labels=["model"],
            )
            for kind in ("prompt", "completion")
        }
        for model, stats in self.stats.items():
            for event, n in sorted(stats.items()):
                if event not in _OWN_SERIES:
                    events.add_metric([model, event], n)
            for kind, family in tokens.items():
                if f"{kind}_tokens" in stats:
                    family.add_metric([model], stats[f"{kind}_tokens"])
        yield events
        yield from tokens.values()


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "conch_requests",
            "HTTP requests answered, by route and status code.",
            ["path", "status"],
            registry=self.registry,
        )

        def histogram(name: str, help_text: str, label: str, buckets=LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, help_text, [label], buckets=buckets, registry=self.registry)

        self.latency = histogram(
            "conch_request_latency_seconds",
            "Time from request to last byte (a whole stream), by route.",
            "path",
        )
        self.first_token = histogram(
            "conch_time_to_first_token_seconds",
            "Time from submitting a request to the engine to its first generated token, by model.",
            "model",
        )
        self.inter_token = histogram(
            "conch_inter_token_latency_seconds",
            "Time between consecutive generated tokens of a request, by model.",
            "model",
            TOKEN_BUCKETS,
        )
        self.queue_time = histogram(
            "conch_queue_time_seconds",
            "Time from submitting a request to the engine to its getting a batch slot, by model.",
            "model",
        )
        self._engines = _EngineCollector()
        self.registry.register(self._engines)

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def observe_completion(self, model: str, completion: Completion) -> None:
        """Token timing of a finished request (thread-safe: called from the engine client's reader thread)."""
        timings = completion.timings or {}
        if (queued := timings.get("queue_seconds")) is not None:
            self.queue_time.labels(model).observe(queued)
        if (first := timings.get("first_token_seconds")) is not None:
            self.first_token.labels(model).observe(first)
        inter_token = self.inter_token.labels(model)
        for gap in timings.get("inter_token_seconds", ()):
            inter_token.observe(gap)

    def render(self, engines: dict, stats: dict[str, dict]) -> bytes:
        """The exposition; `stats` holds each engine's counters and slot gauges (empty if it did not answer)."""
        self._engines.engines, self._engines.stats = engines, stats
        return generate_latest(self.registry)
