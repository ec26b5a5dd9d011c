"""Experiments side by side: the metric a run selects by, the pick of the best experiment, and the rows of the
comparison table (rule compare_experiments).

Imported at DAG-parse time (the plan reads selection_mode), so only the standard library at module level.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

# Metrics where a smaller value is better; every other metric is maximised unless selection.mode says so.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "persona_name_false_use"})


def selection_mode(metric: str, mode: str | None = None) -> str:
    """`max` or `min`: as configured, else `min` for losses and perplexities and `max` for scores."""
    return mode or ("min" if metric.rsplit(".", 1)[-1] in LOWER_IS_BETTER else "max")


def metric_value(metrics: dict, metric: str, source: str = "metrics"):
    """The number at dotted path `metric` (e.g. `tuned.rouge_l`) in a metrics.json; a clear error if absent."""
    node = metrics
    for i, part in enumerate(metric.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(metric.split(".")[:i]) or "the top level"
            have = ", ".join(sorted(node)) if isinstance(node, dict) else type(node).__name__
            raise KeyError(f"{source}: no metric {metric!r} ({part!r} is not under {where}; found: {have})")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float | None):
        raise KeyError(f"{source}: metric {metric!r} is {node!r}, not a number")
    return node


def select(values: dict[str, float | None], mode: str) -> dict:
    """The best experiment by `mode`; a missing or NaN value never wins, ties go to the earlier experiment."""
    usable = {e: v for e, v in values.items() if v is not None and not math.isnan(v)}
    if not usable:
        raise ValueError(f"no experiment has a usable value: {values}")
    sign = 1 if mode == "max" else -1
    ranking = sorted(usable, key=lambda e: -sign * usable[e])  # stable: equal values keep config order
    best = ranking[0]
    return {
        "best": best,
        "value": usable[best],
        "ranking": ranking,
        "ties": [e for e in ranking[1:] if usable[e] == usable[best]],
        "unusable": sorted(set(values) - set(usable)),
    }


def varied_keys(train_configs: dict[str, dict]) -> list[str]:
    """Training keys whose value differs between experiments: the columns of the comparison table."""
    keys = sorted({k for cfg in train_configs.values() for k in cfg})
    return [
        k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in train_configs.values()}) > 1
    ]


def training_cost(benchmark: str | Path) -> dict:
    """Wall time (s) and peak resident memory (MB) of a training job, from its Snakemake benchmark file.

    Snakemake samples the job's whole process tree (torchrun ranks and dataloader workers included), every
    second for the first 30 s and every 30 s after; NA where it caught no sample."""
    with open(benchmark, encoding="utf-8", newline="") as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))

    def number(key):
        try:
            return float(row[key])
        except (KeyError, TypeError, ValueError):
            return None

    return {"train_wall_s": number("s"), "train_peak_rss_mb": number("max_rss")}


def comparison_rows(
    metrics: dict[str, dict], train_configs: dict[str, dict], final_loss: dict, costs: dict | None = None
) -> list[dict]:
    """One row per experiment: the keys it varies, every base/tuned metric, the last training loss, and
    what training cost (wall time, peak memory)."""
    swept = varied_keys(train_configs)
    rows = []
    for name, result in metrics.items():
        row = {"experiment": name, **{k: train_configs[name].get(k) for k in swept}}
        for model in ("base", "tuned"):
            row.update({f"{model}.{k}": v for k, v in result.get(model, {}).items()})
        row["final_train_loss"] = final_loss.get(name)
        row.update((costs or {}).get(name, {}))
        rows.append(row)
    return rows
