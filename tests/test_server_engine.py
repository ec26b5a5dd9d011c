"""The engine in-process, on the tiny model: batching exactness, prefix reuse, stop handling, recovery."""

from __future__ import annotations

import asyncio

import pytest
from test_server_support import offline, offline_greedy

from conch.modeling import render
from conch.server.engine import Engine, QueueFull
from conch.server.sampling import SamplingParams
from conch.server.text import TextAssembler


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return offline()


def make_engine(model_and_tokenizer, **kwargs) -> Engine:
    model, tokenizer = model_and_tokenizer
    return Engine("tiny", model, tokenizer, **kwargs).start()


def ids_of(tokenizer, messages) -> list[int]:
    return tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"]


def conversation(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Tell me about shell number {i}, please."}]


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_staggered_requests_in_one_batch_equal_offline_greedy(model_and_tokenizer, prefix_cache):
    """Requests joining and leaving a running batch at different steps each get exactly their own answer."""
    _, tokenizer = model_and_tokenizer
    engine = make_engine(model_and_tokenizer, prefix_cache=prefix_cache)

    async def scenario():
        async def one(i):
            await asyncio.sleep(0.003 * i)  # arrive while others are mid-generation
            stream = i % 2 == 0
            req = engine.submit(
                ids_of(tokenizer, conversation(i)), SamplingParams(), 6 + 3 * i, stream=stream
            )
            if stream:
                pieces = [p async for p in req.pieces()]
                assert "".join(pieces) == req.finished.text
            return req.finished if stream else await req.result()

        return await asyncio.gather(*(one(i) for i in range(8)))

    try:
        results = asyncio.run(scenario())
    finally:
        engine.close()
    for i, result in enumerate(results):
        assert result.finish_reason == "length" and result.completion_tokens == 6 + 3 * i
        assert result.text == offline_greedy(conversation(i), 6 + 3 * i)
    events = engine.snapshot()
    assert events["decode_rows"] > events["decode_passes"]  # rows shared passes
    assert (events["prefix_hit_tokens"] > 0) == prefix_cache


def test_multi_turn_conversation_reuses_its_prefix(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    engine = make_engine(model_and_tokenizer)
    turns = [{"role": "user", "content": "First question?"}]

    async def ask():
        return await engine.submit(ids_of(tokenizer, turns), SamplingParams(), 8, stream=False).result()

    try:
        first = asyncio.run(ask())
        reused_by_first = engine.snapshot()["prefix_hit_tokens"]
        first_prompt = ids_of(tokenizer, turns)
        turns += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "And then?"}]
        second = asyncio.run(ask())
    finally:
        engine.close()
    assert second.text == offline_greedy(turns, 8)
    assert reused_by_first > 0  # the chat template's head
    # The second turn starts with the whole first prompt: all of it but its last token was reused.
    assert engine.snapshot()["prefix_hit_tokens"] - reused_by_first >= len(first_prompt) - 1


def test_a_failing_step_fails_its_requests_and_the_engine_goes_on(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    engine = make_engine(model_and_tokenizer)

    async def scenario():
        bad = engine.submit([len(tokenizer) + 1000], SamplingParams(), 4, stream=False)  # no such token
        bad_result = await bad.result()
        good = await engine.submit(
            ids_of(tokenizer, conversation(1)), SamplingParams(), 5, stream=False
        ).result()
        return bad_result, good

    try:
        bad, good = asyncio.run(scenario())
    finally:
        engine.close()
    assert bad.finish_reason == "error" and "index" in bad.error.lower()
    assert good.finish_reason == "length" and good.text == offline_greedy(conversation(1), 5)
    assert engine.active == 0 and engine.queue_depth == 0


def test_queue_limit_and_cancellation(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    engine = make_engine(model_and_tokenizer, max_batch_size=1, max_queue=1)
    prompt = ids_of(tokenizer, conversation(2))

    async def scenario():
        running = engine.submit(prompt, SamplingParams(), 400, stream=True)
        queued = engine.submit(prompt, SamplingParams(), 400, stream=False)
        with pytest.raises(QueueFull, match="limit 1"):
            engine.submit(prompt, SamplingParams(), 400, stream=False)
        await running.pieces().__anext__()
        queued.cancel()  # leaves the queue at once
        assert engine.queue_depth == 0
        running.cancel()
        return await running.result(), await queued.result()

    try:
        running, queued = asyncio.run(scenario())
    finally:
        engine.close()
    assert running.finish_reason == queued.finish_reason == "cancelled"
    assert running.completion_tokens < 400 and queued.completion_tokens == 0
    assert engine.active == 0


def test_text_assembler_holds_back_possible_stop_strings_and_trailing_space(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    ids = tokenizer("The sea is  deep.\n\nAnd blue END of story", add_special_tokens=False)["input_ids"]
    text = TextAssembler(tokenizer, stop=("END",))
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


def test_text_assembler_matches_a_whole_decode(model_and_tokenizer):
    """Piecewise decoding of junk (incomplete UTF-8 included) concatenates to what one decode gives."""
    model, tokenizer = model_and_tokenizer
    ids = list(range(3, 3 + 200, 7)) + tokenizer("神奇海螺", add_special_tokens=False)["input_ids"]
    text = TextAssembler(tokenizer)
    pieces = []
    for token in ids:
        text.add(token)
        pieces.append(text.pending())
    text.finish()
    pieces.append(text.pending())
    assert "".join(pieces) == text.text == tokenizer.decode(ids, skip_special_tokens=True).strip()
