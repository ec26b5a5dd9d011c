"""Reward models: LLaMA-Factory's `stage: rm` output -> a Hugging Face sequence-classification model, and scoring.

LLaMA-Factory saves a reward model as a LoRA adapter on the causal LM plus `value_head.safetensors`
(`v_head.summary`: Linear(hidden, 1) with a bias), read at the last token of the pair's encoding. TRL's PPO
and most reward-model tooling expect an `AutoModelForSequenceClassification` (a backbone plus `score`). The
conversion merges the adapter, copies the backbone, and puts the value head in `score`. HF's `score` has no
bias, so the bias is kept in `reward_head.json` and `load_reward_model` restores it: with conch's loader the
scores are LLaMA-Factory's own; other tools loading the directory get them shifted by that constant, which
changes no ranking.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conch.model.modeling import batches, device

HEAD_FILE = "reward_head.json"


def convert_lf_reward_model(base_model: str, adapter: str, out_dir: str | Path) -> dict:
    """Write a sequence-classification reward model to `out_dir`; return what the conversion did."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    head = load_file(str(Path(adapter) / "value_head.safetensors"))
    weight, bias = head["v_head.summary.weight"].float(), head["v_head.summary.bias"].float()
    causal = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    # merge_and_unload also folds modules_to_save (e.g. a trained embed_tokens) into the backbone.
    causal = PeftModel.from_pretrained(causal, adapter).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    config = causal.config
    config.num_labels = 1
    config.pad_token_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    reward = AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)
    backbone = getattr(causal, causal.base_model_prefix)
    missing, unexpected = getattr(reward, reward.base_model_prefix).load_state_dict(backbone.state_dict())
    if missing or unexpected:
        raise RuntimeError(
            f"reward backbone does not match the causal LM: missing {missing}, extra {unexpected}"
        )
    with torch.no_grad():
        reward.score.weight.copy_(weight.to(reward.score.weight.dtype))
    out = Path(out_dir)
    reward.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary = {"base_model": str(base_model), "adapter": str(adapter), "score_bias": float(bias.item())}
    (out / HEAD_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def load_reward_model(path: str | Path):
    """(model, tokenizer) in eval mode; `score` carries the value head's bias when conch converted it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    head = Path(path) / HEAD_FILE
    if head.exists():
        bias = json.loads(head.read_text(encoding="utf-8"))["score_bias"]
        old = model.score
        model.score = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        with torch.no_grad():
            model.score.weight.copy_(old.weight)
            model.score.bias.fill_(bias)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device()).eval(), tokenizer


@torch.inference_mode()
def reward_scores(model, tokenizer, texts: list[str], batch_size: int = 16) -> list[float]:
    """The reward of each full rendered conversation, read at its last token (right padding)."""
    tokenizer.padding_side = "right"
    scores = []
    for batch in batches(tokenizer, texts, batch_size, model.device):
        hidden = getattr(model, model.base_model_prefix)(**batch).last_hidden_state
        last = batch["attention_mask"].sum(dim=1) - 1
        values = model.score(hidden[torch.arange(len(last)), last]).squeeze(-1)
        scores += values.float().tolist()
    return scores


class RewardAtTurnEnd(torch.nn.Module):
    """A reward model for TRL's PPO that reads the score where LLaMA-Factory trained it.

    LLaMA-Factory scores a pair after the template's whole assistant suffix (for qwen "<|im_end|>\\n"); TRL
    reads the score at the stop token. This wrapper appends the rest of the suffix (`tail_ids`) after each
    sequence's last real token before running the backbone, and returns that hidden state in the stop
    token's place, which is the only position TRL reads from a reward model."""

    base_model_prefix = "backbone"

    def __init__(self, reward_model, tail_ids: list[int], pad_token_id: int):
        super().__init__()
        self.reward_model = reward_model
        self.backbone = _TailBackbone(
            getattr(reward_model, reward_model.base_model_prefix), tail_ids, pad_token_id
        )
        self.score = reward_model.score


class _TailBackbone(torch.nn.Module):
    def __init__(self, backbone, tail_ids: list[int], pad_token_id: int):
        super().__init__()
        self.backbone = backbone
        self.tail = torch.tensor(tail_ids, dtype=torch.long)
        self.pad = pad_token_id

    def forward(self, input_ids, attention_mask, **_):
        from transformers.modeling_outputs import BaseModelOutput

        rows, ends = [], []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            real = mask.nonzero().flatten()
            start, end = int(real[0]), int(real[-1])
            rows.append(torch.cat([ids[start : end + 1], self.tail.to(ids.device)]))
        width = max(len(r) for r in rows)
        batch = torch.full((len(rows), width), self.pad, dtype=torch.long, device=input_ids.device)
        mask = torch.zeros_like(batch, dtype=torch.bool)
        for i, row in enumerate(rows):
            batch[i, : len(row)] = row
            mask[i, : len(row)] = True
            ends.append(len(row) - 1)
        hidden = self.backbone(input_ids=batch, attention_mask=mask, use_cache=False).last_hidden_state
        out = torch.zeros(*input_ids.shape, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
        for i, (mask_row, end) in enumerate(zip(attention_mask, ends, strict=True)):
            out[i, int(mask_row.nonzero().flatten()[-1])] = hidden[i, end]
        return BaseModelOutput(last_hidden_state=out, hidden_states=(out,))
