"""Prove a GGUF file is the merged model: load it back with transformers and compare on the check prompts.

For each prompt (rendered with the merged model's chat template):
- the GGUF's own tokenizer must encode it to the same ids as the merged model's tokenizer;
- both models continue it greedily; exact types (f32, f16) must produce the very same tokens;
- on the prompt plus the merged model's continuation (teacher forcing), every type must agree on the top-1
  token at `min_top1` of the positions and stay within `max_logit_error` of the merged model's logits.
"""

from __future__ import annotations

from pathlib import Path

import torch

from conch.model.modeling import device, render

EXACT_TYPES = frozenset({"f32", "f16"})


def load_gguf(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    kwargs = {"gguf_file": path.name}
    tokenizer = AutoTokenizer.from_pretrained(path.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch.float32, **kwargs)
    return model.to(device()).eval(), tokenizer  # on the merged model's device: differences are the file's


@torch.inference_mode()
def greedy(model, ids: list[int], new_tokens: int, stop_ids: list[int]) -> list[int]:
    inputs = torch.tensor([ids], device=model.device)
    out = model.generate(
        inputs,
        attention_mask=torch.ones_like(inputs),
        max_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=stop_ids,
        pad_token_id=stop_ids[0],
    )
    return out[0, len(ids) :].tolist()


@torch.inference_mode()
def _logits(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids], device=model.device)).logits[0].float().cpu()


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def compare(reference, candidate, prompts: list[str], new_tokens: int, stop_ids: list[int]) -> dict:
    """Tokenizer, greedy and logit agreement of `candidate` (model, tokenizer) with `reference` on `prompts`."""
    ref_model, ref_tok = reference
    model, tok = candidate
    per_prompt, agree, positions, max_diff = [], 0, 0, 0.0
    for prompt in prompts:
        text = render(ref_tok, [{"role": "user", "content": prompt}])
        ids = ref_tok(text, add_special_tokens=False)["input_ids"]
        own_ids = tok(text, add_special_tokens=False)["input_ids"]
        expected = greedy(ref_model, ids, new_tokens, stop_ids)
        got = greedy(model, ids, new_tokens, stop_ids)
        ref_logits, logits = _logits(ref_model, ids + expected), _logits(model, ids + expected)
        agree += int((ref_logits.argmax(-1) == logits.argmax(-1)).sum())
        positions += len(ids) + len(expected)
        max_diff = max(max_diff, float((ref_logits - logits).abs().max()))
        per_prompt.append(
            {
                "prompt": prompt,
                "tokenizer_round_trip": own_ids == ids,
                "greedy_tokens": len(expected),
                "greedy_identical": got == expected,
                "greedy_agreeing_prefix": _common_prefix(expected, got),
            }
        )
    return {
        "tokenizer_round_trip": all(p["tokenizer_round_trip"] for p in per_prompt),
        "greedy_identical": all(p["greedy_identical"] for p in per_prompt),
        "top1_agreement": agree / positions,
        "positions": positions,
        "max_abs_logit_diff": max_diff,
        "prompts": per_prompt,
    }


def verdict(out_type: str, result: dict, min_top1: float, max_logit_error: float) -> list[str]:
    """The failed criteria of one type's comparison, as sentences; empty when it passed."""
    failures = []
    if not result["tokenizer_round_trip"]:
        failures.append("its tokenizer encodes the check prompts to other ids than the merged model's")
    if out_type in EXACT_TYPES and not result["greedy_identical"]:
        failures.append("its greedy continuation differs from the merged model's")
    if result["top1_agreement"] < min_top1:
        failures.append(f"top-1 agreement {result['top1_agreement']:.3f} < {min_top1}")
    if result["max_abs_logit_diff"] > max_logit_error:
        failures.append(f"max |logit diff| {result['max_abs_logit_diff']:.3g} > {max_logit_error}")
    return failures
