"""Pairs rendered the way LLaMA-Factory trains on them, and the two preference scores conch reports.

LLaMA-Factory encodes a pair as prompt ids + answer ids, the answer closed by the template's whole assistant
suffix (qwen: "<|im_end|>\\n"). The policy score is the summed log-probability of those answer ids; the reward
model's score is read at their last token. Both are computed here on exactly those ids.
"""

from __future__ import annotations

import torch

from conch.model.modeling import prompt_messages, render

SENTINEL = "\x00conch-answer\x00"


def answer_suffix(tokenizer) -> str:
    """What the chat template writes after an assistant message's content."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": SENTINEL}], tokenize=False
    )
    return text[text.index(SENTINEL) + len(SENTINEL) :]


def encode(tokenizer, prompt: str, answer: str, suffix: str) -> tuple[list[int], int]:
    """(prompt ids + answer ids, number of prompt ids), encoded in two parts as LLaMA-Factory does."""
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer + suffix, add_special_tokens=False)["input_ids"]
    return p_ids + a_ids, len(p_ids)


@torch.inference_mode()
def answer_logprobs(model, tokenizer, prompts: list[str], answers: list[str]) -> list[float]:
    """Summed log-probability of each answer (with the template suffix) given its rendered prompt."""
    suffix = answer_suffix(tokenizer)
    out = []
    for prompt, answer in zip(prompts, answers, strict=True):
        ids, n_prompt = encode(tokenizer, prompt, answer, suffix)
        ids_t = torch.tensor([ids], device=model.device)
        logits = model(ids_t).logits[0, n_prompt - 1 : -1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(1, ids_t[0, n_prompt:, None]).sum()
        out.append(logp.item())
    return out


@torch.inference_mode()
def pair_rewards(
    model, tokenizer, prompts: list[str], answers: list[str], batch_size: int = 16
) -> list[float]:
    """Reward-model score of each (prompt, answer), read at the answer's last token (right padding)."""
    suffix = answer_suffix(tokenizer)
    encoded = [encode(tokenizer, p, a, suffix)[0] for p, a in zip(prompts, answers, strict=True)]
    pad = tokenizer.pad_token_id
    scores = []
    backbone = getattr(model, model.base_model_prefix)
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(map(len, chunk))
        ids = torch.tensor([row + [pad] * (width - len(row)) for row in chunk], device=model.device)
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in chunk], device=model.device)
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(dim=1) - 1
        scores += model.score(hidden[torch.arange(len(chunk)), last]).squeeze(-1).float().tolist()
    return scores


def rendered_pairs(tokenizer, records: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(prompts, chosen answers, rejected answers) of pair records, prompts rendered by the chat template."""
    # A pair's prompt is the context of its chosen conversation (system, then the turns before the answer).
    prompts = [
        render(tokenizer, prompt_messages({**r, "messages": [*r["messages"], r["chosen"]]})[0])
        for r in records
    ]
    return prompts, [r["chosen"]["content"] for r in records], [r["rejected"]["content"] for r in records]
