"""Base vs merged model: loss, perplexity, ROUGE-L, BLEU-4 and persona-name use on the held-out test split, and
retention of general ability on the bundled general questions (conch/evaluation/retention.py). With an R1-style template
only the answer after the thinking is scored (conch/model/reasoning.py)."""

import csv
import json
import math
from pathlib import Path

from conch.cluster import gpus
from conch.evaluation import retention as R
from conch.evaluation import scores as M
from conch.evaluation.report import comparison_chart, html_report
from conch.model.hub import base_model_path
from conch.model.modeling import answer_loss, generate, load, prompt_messages, render
from conch.model.reasoning import answers, markers, reasonings
from conch.workflow.files import read_jsonl
from conch.workflow.progress import Progress

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p = snakemake.params
records = read_jsonl(snakemake.input.test)
records = records[: p.max_samples] if p.max_samples else records
if not records:
    raise SystemExit(f"evaluate: {snakemake.input.test} is empty; raise data.test_fraction or add data")
contexts, references = zip(*(prompt_messages(r) for r in records), strict=True)
# The loss is on the whole reference (what training teaches, thinking included); the other metrics compare
# answers with answers.
reference_answers = answers(list(references), p.template)
questions = R.load_questions(snakemake.input.retention) if snakemake.input.get("retention") else []


def write_tsv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


# Loss and generation per test record, generation per retention question; for both models.
progress = Progress(
    f"evaluate {snakemake.wildcards.experiment}", total=2 * (2 * len(records) + len(questions)), unit="item"
)


results, outputs, retained = {}, {}, {}
thoughts = {}  # R1-style templates: each model's thinking, kept beside the answers that are scored


def evaluate_model(name: str, path: str) -> tuple[dict, list[str], tuple | None]:
    """(metrics, scored test answers, (retention answers, correct flags) or None) of one model."""

    def step(n=1, phase=""):
        progress.update(progress.done + n, note=f"{name}: {phase}")

    model, tokenizer = load(path)
    prompts = [render(tokenizer, c) for c in contexts]
    loss, n_tokens = answer_loss(model, tokenizer, prompts, list(references), on_item=lambda: step(1, "loss"))
    generated = generate(model, tokenizer, prompts, p.max_new_tokens, p.batch_size, lambda n: step(n, "test"))
    scored = answers(generated, p.template)
    thoughts[name] = reasonings(generated, p.template)
    result = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50)),
        "answer_tokens": n_tokens,
        **M.similarity(scored, reference_answers),
        **M.persona_scores(scored, reference_answers, p.persona_names),
    }
    if not questions:
        return result, scored, None
    asked = [render(tokenizer, [{"role": "user", "content": q["question"]}]) for q in questions]
    said = answers(
        generate(
            model, tokenizer, asked, p.retention_max_new_tokens, p.batch_size, lambda n: step(n, "retention")
        ),
        p.template,
    )
    correct = R.score(questions, said)
    result["retention"] = R.summary(questions, correct)["score"]
    return result, scored, (said, correct)


for name, path in (("base", base_model_path(snakemake.input.base)), ("tuned", snakemake.input.merged)):
    results[name], outputs[name], retained[name] = evaluate_model(name, path)
progress.close()

metrics = {"n_test": len(records), "max_new_tokens": p.max_new_tokens, **results}
if markers(p.template):
    metrics["scored"] = f"answers after the {markers(p.template)[1]} of template {p.template}"
if questions:
    base_sum, tuned_sum = (R.summary(questions, retained[m][1]) for m in ("base", "tuned"))
    metrics["retention"] = {
        "questions": len(questions),
        "file": snakemake.input.retention,
        "max_new_tokens": p.retention_max_new_tokens,
        "kept": R.kept(base_sum, tuned_sum),
        "kept_answers": R.kept_answers(retained["base"][1], retained["tuned"][1]),
        "base": base_sum,
        "tuned": tuned_sum,
    }
    write_tsv(
        snakemake.output.retention,
        [
            {
                "id": q["id"],
                "question": q["question"],
                "references": " | ".join(q["answers"]),
                "base": b,
                "base_correct": int(bc),
                "tuned": t,
                "tuned_correct": int(tc),
            }
            for q, b, bc, t, tc in zip(questions, *retained["base"], *retained["tuned"], strict=True)
        ],
    )
else:
    Path(snakemake.output.retention).write_text("retention evaluation off (eval.retention: null)\n")
Path(snakemake.output.metrics).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")

samples = [
    {"id": r["id"], "prompt": c[-1]["content"], "reference": ref, "base": b, "tuned": t}
    for r, c, ref, b, t in zip(
        records, contexts, reference_answers, outputs["base"], outputs["tuned"], strict=True
    )
]
if thoughts["tuned"] is not None:  # R1-style: the thinking beside the answer that was scored
    for sample, base_thought, tuned_thought in zip(samples, thoughts["base"], thoughts["tuned"], strict=True):
        sample.update(base_reasoning=base_thought, tuned_reasoning=tuned_thought)
write_tsv(snakemake.output.samples, samples)

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
    if questions:
        log.write(f"retention kept: {metrics['retention']['kept']}\n")
