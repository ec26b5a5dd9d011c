"""What the server (conch.engine.client) and an engine process (conch.engine.process) say over their pipe.

Each message is a frozen dataclass and both ends dispatch on its type, as vLLM's EngineCoreRequest and
EngineCoreOutputs do: a field added or renamed is a type error at the sender, not a tuple unpacked wrong at
the receiver. They cross a process boundary by pickling, so they hold plain data only.
"""

from __future__ import annotations

from dataclasses import dataclass

from conch.engine.request import Completion
from conch.engine.sampling import SamplingParams

# ---- to the engine process ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubmitRequest:
    id: int
    prompt_ids: list[int]
    params: SamplingParams
    max_tokens: int
    stream: bool
    # time.monotonic() at submission: the same clock in every process, so queue time counts from the server.
    submitted: float


@dataclass(frozen=True)
class CancelRequest:
    id: int


@dataclass(frozen=True)
class StatsRequest:
    id: int


@dataclass(frozen=True)
class Stop:
    pass


# ---- from the engine process --------------------------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    context_length: int


@dataclass(frozen=True)
class LoadFailed:
    error: str


@dataclass(frozen=True)
class StepOutputs:
    """One step's output for one destination: (request id, a piece of text or the Completion that ends it)."""

    items: list[tuple[int, str | tuple | Completion]]


@dataclass(frozen=True)
class StatsReply:
    id: int
    counters: dict


EngineRequest = SubmitRequest | CancelRequest | StatsRequest | Stop
EngineOutput = Ready | LoadFailed | StepOutputs | StatsReply
