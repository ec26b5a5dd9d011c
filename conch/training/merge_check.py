"""Is the merged model really base + adapter? Logits of both on the check prompts, compared two ways.

1. Closeness, with a tolerance that scales: |merged - unmerged| <= atol + rtol * max|unmerged logits| at every
   position, where rtol depends on the dtype the merged weights are stored in. A float32 merge of a real model
   is not bit-exact (SmolLM2-135M: 1.1e-4 on logits of about 20, summed rounding over 30 layers), and a
   bfloat16 export rounds every weight to 8 bits of mantissa; a wrong merge (a module left out, a wrong
   scale, another adapter) moves logits by far more.
2. Behaviour: the greedy next token agrees at every position, except where the unmerged model's two best
   tokens are within the tolerance of each other (there rounding may legitimately pick the other one).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def stored_dtype(model_dir: str | Path) -> str:
    """The dtype a model directory's weights are saved in (config.json), float32 when it does not say."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32").replace("torch.", "")


def tolerance(reference: torch.Tensor, atol: float, rtol: float) -> float:
    return atol + rtol * reference.abs().max().item()


def compare(merged: list[torch.Tensor], unmerged: list[torch.Tensor], *, atol: float, rtol: float) -> dict:
    """Per-prompt logits [1, positions, vocab] of the merged and the unmerged (base + adapter) model."""
    prompts, passed = [], True
    for m, u in zip(merged, unmerged, strict=True):
        m, u = m.float().reshape(-1, m.shape[-1]), u.float().reshape(-1, u.shape[-1])
        tol = tolerance(u, atol, rtol)
        diff = (m - u).abs().max().item()
        top2 = u.topk(2, dim=-1).values
        decided = (top2[:, 0] - top2[:, 1]) > tol  # positions where the greedy choice is not a near tie
        disagree = (m.argmax(-1) != u.argmax(-1)) & decided
        prompts.append(
            {
                "max_abs_logit_diff": diff,
                "logit_scale": u.abs().max().item(),
                "tolerance": tol,
                "positions": len(u),
                "greedy_positions_checked": int(decided.sum()),
                "greedy_disagreements": int(disagree.sum()),
            }
        )
        passed &= diff <= tol and not disagree.any()
    return {
        "max_abs_logit_diff": max(p["max_abs_logit_diff"] for p in prompts),
        "max_tolerance_used": max(p["tolerance"] for p in prompts),
        "greedy_agreement": 1
        - sum(p["greedy_disagreements"] for p in prompts)
        / max(1, sum(p["greedy_positions_checked"] for p in prompts)),
        "prompts": prompts,
        "passed": bool(passed),
    }


@torch.inference_mode()
def prompt_logits(model, tokenizer, prompts: list[str]) -> list[torch.Tensor]:
    """Logits at every position of each check prompt, rendered with the model's chat template."""
    from conch.model.modeling import render

    texts = [render(tokenizer, [{"role": "user", "content": p}]) for p in prompts]
    return [
        model(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits.float() for t in texts
    ]
