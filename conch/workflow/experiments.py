"""Experiments: named overrides plus a grid that expands to named experiments, the pick of the best one,
and the comparison table (run manifests: conch/workflow/provenance.py).

Imported at DAG-parse time (rules/common.smk), so only the standard library is imported at module level.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
from pathlib import Path

from conch.errors import ConfigError

# Short, familiar spellings for the keys people sweep most; any other key is written out in full.
ALIASES = {
    "learning_rate": "lr",
    "lora_rank": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "drop",
    "num_train_epochs": "ep",
    "per_device_train_batch_size": "bs",
    "gradient_accumulation_steps": "ga",
    "cutoff_len": "len",
    "warmup_ratio": "warmup",
    "weight_decay": "wd",
    "lr_scheduler_type": "sched",
    "finetuning_type": "ft",
}
# Metrics where a smaller value is better; every other metric is maximised unless selection.mode says so.
LOWER_IS_BETTER = frozenset({"loss", "perplexity", "persona_name_false_use"})


# ---- grid -----------------------------------------------------------------------------------------------
def format_value(value) -> str:
    """A value as it reads in an experiment name: 1e-4, 5e-3, 0.1, 3, true, cosine."""
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        value = int(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if 1e-2 <= abs(value) < 1e4:
            return f"{value:.6g}"
        mantissa, exponent = f"{value:.6e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(value)).strip("-.") or "x"


def grid_points(grid: dict) -> list[dict]:
    """The cartesian product of the grid's value lists, keys in sorted order so names do not depend on how
    the config file happens to order them."""
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def grid_name(point: dict) -> str:
    """`{learning_rate: 1e-4, lora_rank: 8}` -> `lr1e-4_r8`, `{lr_scheduler_type: cosine}` -> `sched-cosine`:
    readable, stable and safe as a directory name."""
    parts = []
    for key, value in point.items():
        text = format_value(value)
        parts.append(f"{ALIASES.get(key, key)}{'-' if text[0].isalpha() else ''}{text}")
    return "_".join(parts)


def expand_grid(grid: dict | None) -> dict[str, dict]:
    """{experiment name: overrides} for every grid point; refuses two points that would share a name."""
    expanded: dict[str, dict] = {}
    for point in grid_points(grid) if grid else ():
        name = grid_name(point)
        if name in expanded:
            raise ConfigError(
                f"config key grid: points {expanded[name]} and {point} both become experiment {name!r}; "
                "list each value once, distinct after non-alphanumeric characters become '-'"
            )
        expanded[name] = point
    return expanded


def all_experiments(config: dict) -> dict[str, dict]:
    """Named experiments first, in config order, then the grid's; each maps to its overrides on `train`."""
    named = {name: dict(overrides or {}) for name, overrides in (config.get("experiments") or {}).items()}
    grid = expand_grid(config.get("grid"))
    clashes = sorted(set(named) & set(grid))
    if clashes:
        raise ConfigError(
            f"config key grid: expands to experiment(s) {', '.join(map(repr, clashes))}, which "
            "`experiments` already names; rename the named experiment"
        )
    if not named and not grid:
        raise ConfigError("config key experiments: no experiments; name one or declare a grid")
    return {**named, **grid}


# ---- selection ------------------------------------------------------------------------------------------
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
