"""Loading models and rendering prompts the way they were trained: shared by merge check, eval and server."""

from __future__ import annotations

from pathlib import Path

import torch


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(model_path: str, adapter: str | None = None, dtype: str = "auto"):
    """(model, tokenizer) in eval mode; with `adapter`, the LoRA adapter applied by peft without merging."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per model load; long jobs show one line of their own (conch.progress)
    # LLaMA-Factory saves the tokenizer it trained with beside the adapter; prefer that one.
    has_tokenizer = adapter and (Path(adapter) / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = torch.float32 if device() == "cpu" else (torch.bfloat16 if dtype == "auto" else dtype)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    return model.to(device()).eval(), tokenizer


def prompt_messages(record: dict) -> tuple[list[dict], str]:
    """Split a normalised record into (conversation up to the last answer, the last answer)."""
    messages = list(record["messages"])
    reference = messages[-1]["content"]
    context = messages[:-1]
    if record.get("system"):
        context = [{"role": "system", "content": record["system"]}, *context]
    return context, reference


def render(tokenizer, messages: list[dict]) -> str:
    """The prompt text, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def stop_token_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 16, on_batch=None
) -> list[str]:
    """Greedy answers for rendered prompts, batched with left padding; on_batch(n) after each batch of n."""
    tokenizer.padding_side = "left"
    answers = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=stop_token_ids(tokenizer, model),
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
        if on_batch:
            on_batch(len(new))
    return answers


@torch.inference_mode()
def answer_loss(model, tokenizer, prompts: list[str], answers: list[str], on_item=None) -> tuple[float, int]:
    """Mean cross-entropy over answer tokens (answer then end-of-turn), as SFT trains it; and the token count.

    One sequence at a time: test sets are small and unpadded sequences keep the number exact. on_item() after
    each."""
    eos = tokenizer.eos_token or ""
    total, count = 0.0, 0
    for prompt, answer in zip(prompts, answers, strict=True):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(answer + eos, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + a_ids], device=model.device)
        logits = model(ids).logits[0, len(p_ids) - 1 : -1].float()
        total += torch.nn.functional.cross_entropy(logits, ids[0, len(p_ids) :], reduction="sum").item()
        count += len(a_ids)
        if on_item:
            on_item()
    return total / max(count, 1), count
