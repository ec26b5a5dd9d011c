"""Tool calls and reasoning out of generated text, whole and streamed, in LLaMA-Factory's own formats; and
tool conversations encoded exactly as LLaMA-Factory encodes them for training.

No model is needed: a small byte-level tokenizer stands in (the formats are text), and the calls are
written by each template's own `format_function`, i.e. what a model trained on them learns to write.
"""

from __future__ import annotations

import functools
import json
import random

import pytest

from conch.llamafactory.trained_format import TrainedFormat
from conch.model.reasoning import StreamSplitter
from conch.server import protocol as p
from conch.server.chat_parsing import ParsedOutput, ToolCallStream
from conch.server.http_errors import ApiError
from conch.server.tool_chat import trained_conversation

SYSTEM = "You are a helpful assistant."
CITY = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [
    {"name": "get_weather", "description": "Weather in a city", "parameters": CITY},
    {"name": "get_time", "description": "Local time in a city", "parameters": CITY},
]
NAMES = {t["name"] for t in TOOLS}
# qwen: <tool_call> JSON; default (also smollm2's and deepseekr1's): Action / Action Input;
# llama3: a bare JSON object with "parameters".
TEMPLATES = ["qwen", "default", "smollm2", "llama3", "deepseekr1"]


@functools.cache
def tokenizer():
    from conch.model.scratch import train_tokenizer

    texts = ["What is the weather in Paris?", "It is sunny in Paris.", json.dumps(TOOLS)] * 3
    return train_tokenizer(texts, 400)


@functools.cache
def trained(template: str) -> TrainedFormat:
    return TrainedFormat(tokenizer(), template, SYSTEM)


def call_text(fmt: TrainedFormat, *calls: tuple[str, dict]) -> str:
    """What a model trained in `fmt` writes to call these functions (the training text of a call)."""
    content = json.dumps([{"name": n, "arguments": a} for n, a in calls])
    elements = fmt.template.format_function.apply(content=content)
    return "".join(e for e in elements if isinstance(e, str)).replace(fmt.tokenizer.eos_token, "")


def output(template: str, thinking: bool = False, single: bool = False) -> ParsedOutput:
    return ParsedOutput(
        StreamSplitter() if thinking else None, ToolCallStream(trained(template), NAMES, single)
    )


def streamed(out: ParsedOutput, text: str, seed: int = 0) -> list[dict]:
    """The deltas for `text` cut into random pieces (1-6 characters), as the engine might emit it."""
    rng, deltas, at = random.Random(seed), [], 0
    while at < len(text):
        step = rng.randint(1, 6)
        deltas += out.delta(text[at : at + step])
        at += step
    return deltas + out.flush()


def joined(deltas: list[dict], key: str) -> str:
    return "".join(d.get(key, "") for d in deltas)


def stream_calls(deltas: list[dict]) -> list[dict]:
    """Tool calls put together from deltas as the openai client does (by index)."""
    calls: dict[int, dict] = {}
    for d in deltas:
        for c in d.get("tool_calls", ()):
            call = calls.setdefault(c["index"], {"name": "", "arguments": ""})
            call["name"] += c.get("function", {}).get("name", "")
            call["arguments"] += c.get("function", {}).get("arguments", "")
    return [calls[i] for i in sorted(calls)]


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_trained_call_parses_whole_and_streamed_alike(template):
    text = call_text(trained(template), ("get_weather", {"city": "Paris"}))
    whole = output(template)
    message = whole.message(text)
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert whole.finish_reason("stop") == "tool_calls"

    for seed in range(5):
        out = output(template)
        deltas = streamed(out, text, seed)
        assert joined(deltas, "content") == ""  # nothing of the call leaks out as text
        assert stream_calls(deltas) == [call["function"]]
        head = deltas[0]["tool_calls"][0]  # OpenAI's shape: index, id, type and name first, then arguments
        assert head["index"] == 0 and head["id"].startswith("call_") and head["function"]["arguments"] == ""
        assert out.finish_reason("stop") == "tool_calls"


@pytest.mark.parametrize("template", ["qwen", "default"])
def test_parallel_calls_keep_their_order_and_single_keeps_the_first(template):
    text = call_text(trained(template), ("get_weather", {"city": "Oslo"}), ("get_time", {"city": "Lima"}))
    names = [c["function"]["name"] for c in output(template).message(text)["tool_calls"]]
    assert names == ["get_weather", "get_time"]
    assert [c["name"] for c in stream_calls(streamed(output(template), text))] == names
    assert len(output(template, single=True).message(text)["tool_calls"]) == 1


@pytest.mark.parametrize("template", ["qwen", "default"])
def test_text_before_the_call_streams_as_content_at_once(template):
    call = call_text(trained(template), ("get_time", {"city": "Rome"}))
    out = output(template)
    early = out.delta("Let me check. ")
    assert joined(early, "content") == "Let me check. "  # not held back: it cannot start a marker
    deltas = early + streamed(out, call)
    assert joined(deltas, "content").strip() == "Let me check."
    assert stream_calls(deltas)[0]["name"] == "get_time"
    assert output(template).message("Let me check. " + call)["content"] == "Let me check."


@pytest.mark.parametrize(
    "answer",
    [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": }}\n</tool_call>',  # arguments not JSON
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"',  # cut off by max_tokens
        '<tool_call>\n{"name": "book_flight", "arguments": {"to": "Paris"}}\n</tool_call>',  # not offered
        '<tool_call>\n{"name": "get_weather", "arguments": "Paris"}\n</tool_call>',  # not an object
        "<tool_call> is what I would write, but I will not.",
    ],
)
def test_output_that_is_not_a_valid_call_comes_back_as_plain_content(answer):
    whole = output("qwen")
    message = whole.message(answer)
    assert message == {"role": "assistant", "content": answer}
    assert whole.finish_reason("stop") == "stop" and whole.finish_reason("length") == "length"
    out = output("qwen")
    deltas = streamed(out, answer)
    assert joined(deltas, "content") == answer and not stream_calls(deltas)
    assert out.finish_reason("stop") == "stop"


def test_a_marker_cut_across_pieces_is_held_and_a_false_start_released():
    out = output("qwen")
    assert out.delta("It is <to") == [{"content": "It is "}]  # "<to" may begin "<tool_call>"
    assert out.delta("day's date.") == [{"content": "<today's date."}]
    out = output("qwen")
    assert out.delta("<tool") == [] and out.delta("_call") == []
    rest = '>\n{"name": "get_time", "arguments": {"city": "Oslo"}}\n</tool_call>'
    assert out.delta(rest) == []
    assert stream_calls(out.flush()) == [{"name": "get_time", "arguments": '{"city": "Oslo"}'}]


def test_reasoning_comes_first_then_content_or_calls():
    text = "<think>\nThe user wants the weather.\n</think>\n\nIt is sunny."
    whole = ParsedOutput(StreamSplitter(), None)
    assert whole.message(text) == {
        "role": "assistant",
        "content": "It is sunny.",
        "reasoning_content": "The user wants the weather.",
    }
    deltas = streamed(ParsedOutput(StreamSplitter(), None), text, seed=3)
    kinds = [next(iter(d)) for d in deltas]
    assert kinds == sorted(kinds, key=["reasoning_content", "content"].index)  # all thinking before content
    assert joined(deltas, "reasoning_content").strip() == "The user wants the weather."
    assert joined(deltas, "content") == "It is sunny."

    call = call_text(trained("deepseekr1"), ("get_weather", {"city": "Cairo"}))
    thinking_call = "<think>\nI need the weather tool.\n</think>\n\n" + call
    message = output("deepseekr1", thinking=True).message(thinking_call)
    assert message["reasoning_content"] == "I need the weather tool."
    assert message["content"] is None and message["tool_calls"][0]["function"]["name"] == "get_weather"
    deltas = streamed(output("deepseekr1", thinking=True), thinking_call, seed=1)
    assert joined(deltas, "reasoning_content").strip() == "I need the weather tool."
    assert stream_calls(deltas) == [{"name": "get_weather", "arguments": '{"city": "Cairo"}'}]


def test_a_model_still_thinking_at_the_token_limit_has_no_answer():
    message = ParsedOutput(StreamSplitter(), None).message("<think>\nLet me see, first")
    assert message["reasoning_content"] == "Let me see, first" and message["content"] == ""


# ---- requests: OpenAI messages -> LLaMA-Factory's turns, encoded as in training ----------------------
def request(messages: list[dict], **extra) -> p.ChatCompletionRequest:
    return p.ChatCompletionRequest.model_validate({"messages": messages, **extra})


ROUND_TRIP = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"condition": "sunny"}'},
]


@pytest.mark.parametrize("template", ["qwen", "default", "llama3"])
def test_the_served_prompt_is_the_training_prompt(template):
    """A request's prompt ids equal what LLaMA-Factory's training encodes before the same answer."""
    fmt = trained(template)
    record = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "function", "content": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}})},
        {"role": "observation", "content": '{"condition": "sunny"}'},
        {"role": "assistant", "content": "It is sunny in Paris."},
    ]
    pairs = fmt.template.encode_multiturn(fmt.tokenizer, record, None, json.dumps(TOOLS))
    training_prompt = [i for prompt, answer in pairs[:-1] for i in prompt + answer] + pairs[-1][0]
    messages, system = trained_conversation(request(ROUND_TRIP), fmt.template.tool_call_words)
    assert fmt.prompt_ids(messages, system, TOOLS) == training_prompt
    # The forced start of a call (tool_choice required / named) is how training's call answer begins.
    assert pairs[0][1][: len(fmt.call_prefix("get_weather").ids)] == fmt.call_prefix("get_weather").ids
    assert pairs[0][1][: len(fmt.call_prefix(None).ids)] == fmt.call_prefix(None).ids


def test_tool_results_in_a_row_are_one_observation_and_order_is_checked():
    two_calls = dict(ROUND_TRIP[1], tool_calls=ROUND_TRIP[1]["tool_calls"] * 2)
    messages, _ = trained_conversation(
        request([ROUND_TRIP[0], two_calls, ROUND_TRIP[2], dict(ROUND_TRIP[2], content="{}")]), ("<a>", "</a>")
    )
    assert [m["role"] for m in messages] == ["user", "function", "observation"]
    assert messages[2]["content"] == '{"condition": "sunny"}\n{}'
    assert json.loads(messages[1]["content"]) == [{"name": "get_weather", "arguments": {"city": "Paris"}}] * 2

    with pytest.raises(ApiError, match="turn 2 is observation"):
        trained_conversation(request([ROUND_TRIP[0], ROUND_TRIP[2]]), ("<a>", "</a>"))
    with pytest.raises(ApiError, match="must end with a user message or tool results"):
        trained_conversation(request(ROUND_TRIP[:2]), ("<a>", "</a>"))
    bad = dict(
        ROUND_TRIP[1], tool_calls=[{"id": "c", "function": {"name": "get_weather", "arguments": "{city"}}]
    )
    with pytest.raises(ApiError, match=r"messages\[1\]\.tool_calls\[0\]\.function\.arguments is not JSON"):
        trained_conversation(request([ROUND_TRIP[0], bad, ROUND_TRIP[2]]), ("<a>", "</a>"))


def test_text_said_with_a_call_is_kept_as_llamafactory_keeps_it():
    said = dict(ROUND_TRIP[1], content="Checking.")
    messages, _ = trained_conversation(
        request([ROUND_TRIP[0], said, ROUND_TRIP[2]]), ("<tool_call>", "</tool_call>")
    )
    assert messages[1]["content"].startswith("Checking.<tool_call>{")
    template = trained("qwen").template
    rendered = template.format_function.apply(
        content=messages[1]["content"], tool_call_words=template.tool_call_words
    )[0]
    assert rendered.startswith('Checking.<tool_call>\n{"name": "get_weather"')
