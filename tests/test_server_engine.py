"""The engine on the tiny model, driven the way its process drives it (`Engine.enqueue` with a `post` callback):
batching exactness, prefix reuse, stop handling, recovery; and its client, the server's side of the process."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import pytest
from test_server_support import offline_greedy, tiny_model

from conch.engine.client import EngineClient
from conch.engine.core import Engine
from conch.engine.detokenizer import Detokenizer
from conch.engine.process import EngineSpec
from conch.engine.request import Completion, QueueFull
from conch.engine.sampling import SamplingParams
from conch.model.modeling import render


@pytest.fixture(scope="module")
def model_and_tokenizer():
    """A model of the engine's own (it switches the model's attention and linear layers), and the tokenizer."""
    from conch.model.modeling import load

    return load(tiny_model())


def make_engine(model_and_tokenizer, **kwargs) -> Engine:
    model, tokenizer = model_and_tokenizer
    return Engine("tiny", model, tokenizer, **kwargs).start()


class Posts:
    """What the engine hands over, kept per request id (the engine process sends it down its pipe instead)."""

    def __init__(self):
        self.pieces, self.done = collections.defaultdict(list), {}
        self._cv = threading.Condition()

    def __call__(self, items) -> None:
        with self._cv:
            for req, item in items:
                if isinstance(item, Completion):
                    self.done[req.id] = item
                else:
                    self.pieces[req.id].append(item)
            self._cv.notify_all()

    def wait(self, *ids: int, timeout: float = 60) -> list[Completion]:
        with self._cv:
            assert self._cv.wait_for(lambda: all(i in self.done for i in ids), timeout), "no answer in time"
            return [self.done[i] for i in ids]


def ids_of(tokenizer, messages) -> list[int]:
    return tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]


def conversation(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about shell number {i}, please."}]


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_staggered_requests_in_one_batch_equal_offline_greedy(model_and_tokenizer, prefix_cache):
    """Requests joining and leaving a running batch at different steps each get exactly their own answer."""
    _, tokenizer = model_and_tokenizer
    engine, posts = make_engine(model_and_tokenizer, prefix_cache=prefix_cache), Posts()
    try:
        for i in range(8):
            time.sleep(0.003)  # arrive while others are mid-generation
            engine.enqueue(
                i, ids_of(tokenizer, conversation(i)), SamplingParams(), 6 + 3 * i, i % 2 == 0, posts
            )
        results = posts.wait(*range(8))
    finally:
        engine.close()
    for i, result in enumerate(results):
        assert result.finish_reason == "length" and result.completion_tokens == 6 + 3 * i
        assert result.text == offline_greedy(conversation(i), 6 + 3 * i)
        if i % 2 == 0:  # streamed: the pieces make up the answer
            assert "".join(posts.pieces[i]) == result.text
    events = engine.snapshot()
    assert events["decode_rows"] > events["decode_passes"]  # rows shared passes
    assert (events["prefix_hit_tokens"] > 0) == prefix_cache


def test_multi_turn_conversation_reuses_its_prefix(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    engine, posts = make_engine(model_and_tokenizer), Posts()
    turns = [{"role": "user", "content": "First question?"}]
    try:
        engine.enqueue(0, ids_of(tokenizer, turns), SamplingParams(), 8, False, posts)
        (first,) = posts.wait(0)
        reused_by_first = engine.snapshot()["prefix_hit_tokens"]
        first_prompt = ids_of(tokenizer, turns)
        turns += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
        engine.enqueue(1, ids_of(tokenizer, turns), SamplingParams(), 8, False, posts)
        (second,) = posts.wait(1)
    finally:
        engine.close()
    assert second.text == offline_greedy(turns, 8)
    assert reused_by_first > 0  # the chat template's head
    # The second turn starts with the whole first prompt: all of it but its last token was reused.
    assert engine.snapshot()["prefix_hit_tokens"] - reused_by_first >= len(first_prompt) - 1


def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    engine, posts = make_engine(model_and_tokenizer), Posts()
    try:
        engine.enqueue(0, [len(tokenizer) + 1000], SamplingParams(), 4, False, posts)  # no such token
        (bad,) = posts.wait(0)
        engine.enqueue(1, ids_of(tokenizer, conversation(1)), SamplingParams(), 5, False, posts)
        (good,) = posts.wait(1)
    finally:
        engine.close()
    assert bad.finish_reason == "error" and "index" in bad.error.lower()
    assert good.finish_reason == "length" and good.text == offline_greedy(conversation(1), 5)
    assert engine.snapshot()["active"] == 0 and engine.snapshot()["queue_depth"] == 0


def test_client_queue_limit_and_cancellation(model_and_tokenizer):
    """The server's side of an engine process: a full queue refuses at once; cancelling frees queue and slot."""
    _, tokenizer = model_and_tokenizer
    spec = EngineSpec(
        name="tiny", path=tiny_model(), max_batch_size=1, max_queue=1, max_prefill_tokens=4096, threads=1
    )
    client = EngineClient(spec)
    prompt = ids_of(tokenizer, conversation(2))

    async def scenario():
        running = client.submit(prompt, SamplingParams(), 400, stream=True)
        queued = client.submit(prompt, SamplingParams(), 400, stream=False)
        with pytest.raises(QueueFull, match="limit 1"):
            client.submit(prompt, SamplingParams(), 400, stream=False)
        await running.pieces().__anext__()
        queued.cancel()  # leaves the queue at once
        running.cancel()
        running_result, queued_result = await running.result(), await queued.result()
        # Results are posted just before the engine drops the row: give it its step to do so.
        for _ in range(100):
            stats = await client.stats()
            if stats["active"] == 0:
                break
            await asyncio.sleep(0.01)
        return running_result, queued_result, stats

    try:
        running, queued, stats = asyncio.run(scenario())
    finally:
        client.close()
    assert running.finish_reason == queued.finish_reason == "cancelled"
    assert running.completion_tokens < 400 and queued.completion_tokens == 0
    assert stats["active"] == stats["queue_depth"] == 0 and stats["finished_cancelled"] == 2


def test_detokenizer_holds_back_possible_stop_strings_and_trailing_space(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids = tokenizer("The sea is  deep.\n\nAnd blue END of story", add_special_tokens=False)["input_ids"]
    text = Detokenizer(tokenizer, stop=("END",))
    streamed, stopped = [], False
    for token in ids:
        stopped = text.add(token)
        streamed.append(text.pending())
        assert "E" not in "".join(streamed)  # could be the start of "END": never sent early
        if stopped:
            break
    text.finish()
    streamed.append(text.pending())
    assert stopped and text.text == "The sea is  deep.\n\nAnd blue" == "".join(streamed)


def test_detokenizer_matches_a_whole_decode(model_and_tokenizer):
    """Piecewise decoding of junk (incomplete UTF-8 included) concatenates to what one decode gives."""
    model, tokenizer = model_and_tokenizer
    ids = list(range(3, 3 + 200, 7)) + tokenizer("神奇海螺", add_special_tokens=False)["input_ids"]
    text = Detokenizer(tokenizer)
    pieces = []
    for token in ids:
        text.add(token)
        pieces.append(text.pending())
    text.finish()
    pieces.append(text.pending())
    assert "".join(pieces) == text.text == tokenizer.decode(ids, skip_special_tokens=True).strip()
