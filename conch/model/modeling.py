"""Loading models and rendering prompts the way they were trained: shared by merge check, eval and server."""

from __future__ import annotations

from pathlib import Path

import torch


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# Share of a device's free memory a model's weights may take when placing it; the rest is left for
# activations and the KV cache of a batch.
WEIGHTS_SHARE = 0.9


def placement(model, budgets: dict) -> int | str | dict:
    """Where a model goes, given `budgets` ({device: free bytes}, GPUs first, then "cpu" as accelerate's
    get_max_memory() lists them): the first device when the weights fit on it, else a device_map that
    spreads whole decoder layers over the devices in order (accelerate). `model` may live on the meta device:
    only its parameter sizes are read."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    size = compute_module_sizes(model)[""]
    first = next(iter(budgets))
    if size <= budgets[first] * WEIGHTS_SHARE:
        return first
    max_memory = {dev: int(free * WEIGHTS_SHARE) for dev, free in budgets.items()}
    # A decoder layer stays whole on one device (accelerate splits any module whose class is not listed).
    whole = list(getattr(model, "_no_split_modules", None) or [])
    device_map = infer_auto_device_map(model, max_memory=max_memory, no_split_module_classes=whole)
    if "disk" in device_map.values():
        raise MemoryError(
            f"the model's weights need {size / 2**30:.3g} GiB; its devices can give "
            f"{sum(max_memory.values()) / 2**30:.3g} GiB "
            f"({', '.join(f'{d}: {b / 2**30:.3g}' for d, b in max_memory.items())})"
        )
    return device_map


def _placement_for(model_path: str, torch_dtype) -> int | str | dict:
    """placement() of the model at model_path on this machine's GPUs, planned on a weightless copy."""
    from accelerate.utils import get_max_memory
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path), dtype=torch_dtype)
    return placement(skeleton, get_max_memory())


def load(model_path: str, adapter: str | None = None, dtype: str = "auto"):
    """(model, tokenizer) in eval mode; with `adapter`, the LoRA adapter applied by peft without merging.

    On GPUs a model goes on one device when it fits there, else it is spread over all of them
    (`device_map`, accelerate): 70B in bf16 over 2x 80 GB. Inputs go to `model.device` (the first layer's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per model load; long jobs show one line of their own (conch.jobs.progress)
    # LLaMA-Factory saves the tokenizer it trained with beside the adapter; prefer that one.
    has_tokenizer = adapter and (Path(adapter) / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter if has_tokenizer else model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = torch.float32 if device() == "cpu" else (torch.bfloat16 if dtype == "auto" else dtype)
    where = "cpu" if device() == "cpu" else _placement_for(model_path, torch_dtype)
    spread = isinstance(where, dict)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch_dtype, **({"device_map": where} if spread else {})
    )
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if not spread:
        model = model.to(f"cuda:{where}" if isinstance(where, int) else where)
    return model.eval(), tokenizer


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


def batches(tokenizer, texts: list[str], batch_size: int, device):
    """Rendered texts tokenised `batch_size` at a time, padded on the tokenizer's padding side."""
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        yield tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


@torch.inference_mode()
def generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 16, on_batch=None
) -> list[str]:
    """Greedy answers for rendered prompts, batched with left padding; on_batch(n) after each batch of n."""
    tokenizer.padding_side = "left"
    answers = []
    for batch in batches(tokenizer, prompts, batch_size, model.device):
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
