"""Checkpoint compare_experiments: every experiment in one table and three charts (selection metric, loss
curves, training cost: wall time and peak memory); the best by the configured metric goes to best.json.
Every path comes from the rule's input and output (conch/workflow/experiments.py holds the selection)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from conch.errors import JobFailed  # noqa: E402
from conch.evaluation.selection import comparison_rows, metric_value, select, training_cost  # noqa: E402
from conch.jobs.files import read_jsonl  # noqa: E402


def run(input, output, params, log):
    p = params
    metrics, curves, eval_curves = {}, {}, {}
    for name, metrics_path, log_path in zip(p.experiments, input.metrics, input.trainer_logs, strict=True):
        metrics[name] = json.loads(Path(metrics_path).read_text(encoding="utf-8"))
        entries = read_jsonl(log_path)
        curves[name] = [(e["epoch"], e["loss"]) for e in entries if "loss" in e]
        eval_curves[name] = [(e["epoch"], e["eval_loss"]) for e in entries if "eval_loss" in e]
    try:
        values = {
            name: metric_value(metrics[name], p.metric, str(path))
            for name, path in zip(p.experiments, input.metrics, strict=True)
        }
    except KeyError as err:
        raise JobFailed(f"compare_experiments: selection.metric: {err.args[0]}") from None
    choice = select(values, p.mode)

    costs = {e: training_cost(b) for e, b in zip(p.experiments, input.train_benchmarks, strict=True)}
    final_loss = {e: c[-1][1] if c else None for e, c in curves.items()}
    rows = comparison_rows(metrics, p.train, final_loss, costs)
    for row in rows:
        row["rank"] = (
            choice["ranking"].index(row["experiment"]) + 1 if row["experiment"] in choice["ranking"] else ""
        )
        row["selected"] = row["experiment"] == choice["best"]
    write_table(output.table, rows, swept=set(p.train[p.experiments[0]]) if p.experiments else set())

    best = {
        "metric": p.metric,
        "mode": p.mode,
        **choice,
        "values": values,
        # The base model is shared, so its score is one reference line for every experiment.
        "base_value": metric_value(metrics[choice["best"]], "base." + p.metric.split(".", 1)[1])
        if p.metric.startswith("tuned.")
        else None,
    }
    Path(output.best).write_text(json.dumps(best, indent=2) + "\n", encoding="utf-8")

    names = list(p.experiments)
    colors = ["C2" if n == choice["best"] else "C0" for n in names]
    metric_chart(output.chart, names, values, colors, best, p.metric, p.mode)
    loss_chart(output.loss_curves, names, curves, eval_curves)
    labels = [f"{n}\n({p.train[n].get('finetuning_type', 'lora')})" for n in names]
    cost_chart(output.cost_chart, labels, [costs[n] for n in names], colors)

    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"{p.metric} ({p.mode}): {json.dumps(values)}\nbest: {choice['best']}\n")
        fh.write(f"training cost: {json.dumps(costs)}\n")


def write_table(path, rows: list[dict], swept: set[str]) -> None:
    """The comparison CSV: metrics to 5 significant digits for reading, the swept training values exactly
    as configured."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
        writer.writeheader()
        writer.writerows(
            {k: float(f"{v:.5g}") if isinstance(v, float) and k not in swept else v for k, v in row.items()}
            for row in rows
        )


def metric_chart(path, names, values, colors, best, metric, mode) -> None:
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(names) + 2), 3.8))
    ax.bar(names, [values[n] if values[n] is not None else 0 for n in names], color=colors)
    if best["base_value"] is not None:
        ax.axhline(best["base_value"], color="grey", linestyle="--", label="base model")
        ax.legend()
    ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.set_title(f"best: {best['best']} ({values[best['best']]:.4g})")
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def loss_chart(path, names, curves, eval_curves) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, name in enumerate(names):
        if curves[name]:
            ax.plot(*zip(*curves[name], strict=True), color=f"C{i % 10}", label=f"{name} train")
        if eval_curves[name]:
            ax.plot(*zip(*eval_curves[name], strict=True), "o--", color=f"C{i % 10}", label=f"{name} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cost_chart(path, labels, costs, colors) -> None:
    """LoRA against full and freeze fine-tuning: what each cost, beside the selection metric."""
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(labels) + 3), 3.8))
    for ax, key, title in (
        (axes[0], "train_wall_s", "training wall time (s)"),
        (axes[1], "train_peak_rss_mb", "training peak memory, RSS (MB)"),
    ):
        ax.bar(labels, [cost[key] or 0 for cost in costs], color=colors)
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
