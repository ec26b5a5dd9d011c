"""The README's real-model tables from a finished run of config/smollm2-135m.yaml.

    flock -x /tmp/conch-timing.lock snakemake --cores 2 --configfile config/smollm2-135m.yaml   # timed, idle
    .venv/bin/python bench/real_model_table.py .                                                 # the tables

Quality: base vs tuned from results/eval/default/metrics.json and the RAG evaluation. Time: each job's wall
seconds from benchmarks/ (Snakemake's own timing of the job), in the order the DAG runs them, and the whole
run's elapsed time from Snakemake's log of the last complete run.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import yaml

RECIPE = "config/smollm2-135m.yaml"
STEPS = [
    "base_model/dequantize_gguf",
    "prepare_dataset/{dataset}",
    "measure_token_lengths/{dataset}",
    "rag/ingest",
    "rag/chunk",
    "rag/index",
    "train_adapter/default",
    "merge_adapter/default",
    "evaluate/default",
    "rag/eval_default",
    "serve/default",
]


def pct(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def cited(answers: dict) -> str:
    return f"{100 * answers['citation_rate']:.0f} % ({answers['with_citation']} / {answers['generated']})"


def quality(run: Path) -> list[str]:
    m = json.loads((run / "results/eval/default/metrics.json").read_text(encoding="utf-8"))
    rag = json.loads((run / "results/rag/eval/default/retrieval_metrics.json").read_text(encoding="utf-8"))
    smoke = json.loads((run / "results/serve/default/smoke_test.json").read_text(encoding="utf-8"))
    ret = m["retention"]
    rows = [
        ("perplexity (test split)", f"{m['base']['perplexity']:.1f}", f"{m['tuned']['perplexity']:.1f}"),
        ("ROUGE-L (test split)", pct(m["base"]["rouge_l"]), pct(m["tuned"]["rouge_l"])),
        (
            f"persona name used where the reference does (%, {m['tuned']['persona_references']} records)",
            pct(m["base"]["persona_name_recall"]),
            pct(m["tuned"]["persona_name_recall"]),
        ),
        (
            f"retention: {ret['questions']} general questions answered (%)",
            f"{pct(ret['base']['score'])} (en {pct(ret['base']['by_lang'].get('en'))}, "
            f"zh {pct(ret['base']['by_lang'].get('zh'))})",
            f"{pct(ret['tuned']['score'])} (en {pct(ret['tuned']['by_lang'].get('en'))}, "
            f"zh {pct(ret['tuned']['by_lang'].get('zh'))}); kept {ret['kept']:.2f}, "
            f"base's answers kept {ret['kept_answers']:.2f}",
        ),
        (
            "RAG citation rate: answers citing a source they were given (base given the same sources)",
            cited(rag["answers_base"]),
            cited(rag["answers"]),
        ),
        ('served model: "Who are you?" (serve smoke test)', "–", smoke["chat_content"]),
    ]
    lines = [f"| metric (test split: {m['n_test']} records) | base | tuned |", "|---|---|---|"]
    return lines + [f"| {a} | {b} | {c} |" for a, b, c in rows]


def elapsed(run: Path) -> str | None:
    """Snakemake's 'Elapsed time' of the newest log of a run that finished every step."""
    for log in sorted((run / ".snakemake" / "log").glob("*.snakemake.log"), reverse=True):
        text = log.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"^Elapsed time: (\S+)", text, re.M)
        if found and "steps (100%) done" in text:
            return found.group(1).split(".")[0]
    return None


def timing(run: Path, dataset: str) -> list[str]:
    lines = ["| step | wall s |", "|---|---:|"]
    total = 0.0
    for step in STEPS:
        path = run / "benchmarks" / f"{step.format(dataset=dataset)}.tsv"
        if path.exists():
            seconds = float(list(csv.DictReader(path.open(), delimiter="\t"))[-1]["s"])
            total += seconds
            lines.append(f"| {step.format(dataset=dataset)} | {seconds:.0f} |")
    lines.append(f"| sum of the jobs above | {total:.0f} |")
    return [
        *lines,
        f"| whole run, 2 cores (Snakemake's elapsed time; jobs overlap) | {elapsed(run) or '–'} |",
    ]


if __name__ == "__main__":
    run_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    recipe = yaml.safe_load((run_dir / RECIPE).read_text(encoding="utf-8"))
    print("\n".join(quality(run_dir)) + "\n\n" + "\n".join(timing(run_dir, recipe["dataset"])))
