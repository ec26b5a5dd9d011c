"""Base vs merged model on the held-out test split: loss, perplexity, ROUGE-L, BLEU-4, persona-name use."""

import csv
import json
import math
from pathlib import Path

from conch import gpus
from conch import metrics as M
from conch.files import read_jsonl
from conch.hub import base_model_path
from conch.modeling import answer_loss, generate, load, prompt_messages, render
from conch.report import comparison_chart, html_report

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p = snakemake.params
records = read_jsonl(snakemake.input.test)
records = records[: p.max_samples] if p.max_samples else records
if not records:
    raise SystemExit(f"evaluate: {snakemake.input.test} is empty; raise data.test_fraction or add data")
contexts, references = zip(*(prompt_messages(r) for r in records), strict=True)

results, outputs = {}, {}
for name, path in (("base", base_model_path(snakemake.input.base)), ("tuned", snakemake.input.merged)):
    model, tokenizer = load(path)
    prompts = [render(tokenizer, c) for c in contexts]
    loss, n_tokens = answer_loss(model, tokenizer, prompts, list(references))
    outputs[name] = generate(model, tokenizer, prompts, p.max_new_tokens, p.batch_size)
    results[name] = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "answer_tokens": n_tokens,
        **M.similarity(outputs[name], list(references)),
        **M.persona_scores(outputs[name], list(references), p.persona_names),
    }
    del model

metrics = {"n_test": len(records), "max_new_tokens": p.max_new_tokens, **results}
Path(snakemake.output.metrics).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

samples = [
    {"id": r["id"], "prompt": c[-1]["content"], "reference": ref, "base": b, "tuned": t}
    for r, c, ref, b, t in zip(records, contexts, references, outputs["base"], outputs["tuned"], strict=True)
]
with open(snakemake.output.samples, "w", encoding="utf-8", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(samples[0]), delimiter="\t")
    writer.writeheader()
    writer.writerows(samples)

comparison_chart(metrics, snakemake.output.chart)
title = f"conch eval: {snakemake.wildcards.experiment}"
# LLaMA-Factory plots validation loss only when the experiment evaluates during training.
eval_loss_plot = Path(snakemake.input.loss_plot).with_name("training_eval_loss.png")
images = [
    snakemake.input.loss_plot,
    *([eval_loss_plot] if eval_loss_plot.exists() else []),
    snakemake.output.chart,
]
page = html_report(title, metrics, samples, images)
Path(snakemake.output.report).write_text(page, encoding="utf-8")
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    for name in ("base", "tuned"):
        log.write(f"{name}: {json.dumps(results[name], ensure_ascii=False)}\n")
