"""conch's inference engine: continuous batching of one model, in a process of its own.

The way vLLM keeps its engine apart from its OpenAI entrypoints, this package knows nothing of HTTP; the server
(conch.server) renders and tokenizes prompts, submits token ids through an `EngineClient` and streams back what
the engine process produces.

    messages.py      what client and engine process say over their pipe (typed, frozen)
    client.py        the server's side: start the engine process, submit/cancel, deliver results to the loop
    process.py       the engine process: load the model, serve the pipe
    core.py          the step loop: plan a step, run it, sample, finish who is done
    scheduler.py     the waiting queue, slots, and what each step runs (decoding rows, prompt chunks)
    runner.py        one forward pass over a packed step (or, for models that cannot be packed, per request)
    attention.py     attention over the slot KV cache, registered with transformers
    kv_cache.py      the batch's KV cache: a pre-allocated slot per running request
    prefix_cache.py  KV of prompt prefixes seen before
    sampling.py      per-request sampling inside the batch: penalties, grammar masks, temperature, top-p
    grammar.py       structured outputs: decoding constrained to a JSON schema (xgrammar), per request
    logprobs.py      log-probabilities of the sampled tokens and their alternatives
    detokenizer.py   token ids to the text a client sees (incremental, stop strings)
    tokenizer.py     loading the tokenizer, encoding prompts
    request.py       a request inside the engine, and what it ends with

What this package exports below is its whole surface: the server imports `from conch.engine import ...`
only, so the modules behind it can change without the server noticing.
"""

from conch.engine.client import EngineClient, Handle
from conch.engine.grammar import JSON_OBJECT, check_schema
from conch.engine.process import EngineSpec
from conch.engine.request import Completion, EngineGone, QueueFull
from conch.engine.sampling import SamplingParams

__all__ = [
    "JSON_OBJECT",
    "Completion",
    "EngineClient",
    "EngineGone",
    "EngineSpec",
    "Handle",
    "QueueFull",
    "SamplingParams",
    "check_schema",
]
