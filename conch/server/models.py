"""The served models: one engine process per configured name, loaded in the background, looked up by name.

Requests only ever name a model; the path behind a name comes from the settings, so no request can make the
server read a path of its choosing.
"""

from __future__ import annotations

import logging

from conch.engine import EngineClient, EngineSpec
from conch.server.http_errors import ApiError
from conch.server.prometheus import Metrics
from conch.server.settings import ServeSettings

log = logging.getLogger("conch.server")


class ModelRegistry:
    def __init__(self, settings: ServeSettings, metrics: Metrics):
        self.settings, self.metrics = settings, metrics
        self.engines: dict[str, EngineClient] = {}
        self.ready = False
        self.load_error: str | None = None

    def load(self) -> None:
        """Load every configured model and start its engine (run in a thread: /health answers meanwhile)."""
        try:
            s = self.settings
            for entry in s.models:
                log.info(
                    "loading model %r from %s%s",
                    entry.name,
                    entry.path,
                    f" with adapter {entry.adapter}" if entry.adapter else "",
                )
                spec = EngineSpec.from_settings(s, entry)
                self.engines[entry.name] = EngineClient(
                    spec,
                    lambda completion, name=entry.name: self.metrics.observe_completion(name, completion),
                )
            self.ready = True
            log.info("ready: %s", ", ".join(self.engines))
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading models failed")
            raise

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()

    def health(self) -> tuple[int, dict, dict | None]:
        """(status, body, headers) for /health."""
        if self.ready:
            if down := {name: e.error for name, e in self.engines.items() if not e.alive}:
                return 503, {"status": "error", "error": down}, None
            return 200, {"status": "ok", "models": list(self.engines)}, None
        if self.load_error:
            return 503, {"status": "error", "error": self.load_error}, None
        return 503, {"status": "loading"}, {"Retry-After": "5"}

    def engine(self, name: str | None) -> EngineClient:
        """The engine serving `name` (the default model for None): 503 while loading or dead, 404 if unknown."""
        if not self.ready:
            raise ApiError(
                503,
                "the server is still loading its models; retry shortly",
                "server_error",
                headers={"Retry-After": "5"},
            )
        name = name or self.settings.default_model
        if name not in self.engines:
            raise ApiError(
                404,
                f"model {name!r} not found; available: {', '.join(self.engines)}",
                "not_found_error",
                param="model",
            )
        engine = self.engines[name]
        if not engine.alive:
            raise ApiError(503, f"model {name!r} is not available: {engine.error}", "server_error")
        return engine
