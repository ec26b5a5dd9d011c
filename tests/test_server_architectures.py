"""Every kind of model transformers generates with: the engine's greedy answers equal transformers' own `generate`,
token for token, while requests join and leave the batch, prompts are prefilled in chunks and prefixes are
reused.

Tiny random models (a few seconds each) of the attention variants conch's packed step handles (full attention,
sliding windows on every layer or on alternating layers, logit soft-capping, attention sinks) and of a model
with convolutional layers, which the engine serves unbatched. Prompts are longer than the sliding windows.
"""

from __future__ import annotations

import random

import pytest
import torch
from test_server_engine import Posts
from test_server_support import ARCH, offline

from conch.engine.core import Engine
from conch.engine.sampling import SamplingParams
from conch.model.modeling import stop_token_ids

WINDOW = 8
SMALL = {**ARCH, "num_hidden_layers": 4}  # the tiny scratch model's shape, with room for alternating layers
ARCHITECTURES = {
    "qwen2": {},
    "mistral-sliding-window": dict(model_type="mistral", sliding_window=WINDOW),
    "qwen2-alternating-windows": dict(
        use_sliding_window=True,
        sliding_window=WINDOW,
        max_window_layers=0,
        layer_types=["sliding_attention", "full_attention"] * 2,
    ),
    "gemma2-windows-softcap": dict(
        model_type="gemma2", sliding_window=WINDOW, head_dim=16, attn_logit_softcapping=5.0
    ),
    "gpt_oss-sinks": dict(
        model_type="gpt_oss", sliding_window=WINDOW, head_dim=16, num_local_experts=4, num_experts_per_tok=2
    ),
    "lfm2-convolutions": dict(model_type="lfm2", full_attn_idxs=[1, 3]),
}
UNBATCHED = {"lfm2-convolutions"}


def tiny(architecture: str):
    """A random model of the architecture with the tiny scratch model's tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    _, tokenizer = offline()
    fields = {**SMALL, **ARCHITECTURES[architecture]}
    config = AutoConfig.for_model(
        fields.pop("model_type", "qwen2"),
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **fields,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tokenizer


def reference(model, tokenizer, prompt: list[int], max_tokens: int) -> list[int]:
    """transformers' own greedy generation, one prompt alone."""
    out = model.generate(
        torch.tensor([prompt]),
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=stop_token_ids(tokenizer, model),
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_greedy_answers_equal_transformers_generate(architecture):
    model, tokenizer = tiny(architecture)
    rng = random.Random(0)
    prompts = [
        [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(WINDOW + 2, 4 * WINDOW))]
        for _ in range(6)
    ]
    prompts[5] = prompts[4] + prompts[5][:7]  # a next turn: starts from prompt 4, remembered
    budgets = [5, 12, 3, 9, 6, 10]
    expected = [
        reference(model, tokenizer, p, n) for p, n in zip(prompts, budgets, strict=True)
    ]  # untouched model
    # Three slots for six requests: later ones join as earlier ones leave; 16 prompt tokens a step: chunks.
    engine = Engine(architecture, model, tokenizer, max_batch_size=3, max_prefill_tokens=16).start()
    posts = Posts()
    try:
        for i in range(5):
            engine.enqueue(i, prompts[i], SamplingParams(), budgets[i], False, posts)
        posts.wait(4)
        engine.enqueue(5, prompts[5], SamplingParams(), budgets[5], False, posts)
        results = posts.wait(*range(len(prompts)))
        events = engine.snapshot()
    finally:
        engine.close()
    for result, tokens in zip(results, expected, strict=True):
        assert result.finish_reason in ("length", "stop"), result
        assert result.token_ids == tokens
    assert engine.runner.batched == (architecture not in UNBATCHED)
    if engine.runner.batched:
        assert events["decode_rows"] > events["decode_passes"]  # requests shared forward passes
        assert events["prefix_hit_tokens"] >= len(prompts[4]) - 1
