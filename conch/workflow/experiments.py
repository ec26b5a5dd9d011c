"""Experiments: named overrides plus a grid that expands to named experiments (the pick of the best one and
the comparison table: conch/evaluation/selection.py; run manifests: conch/workflow/provenance.py).

Imported at DAG-parse time (rules/common.smk), so only the standard library is imported at module level.
"""

from __future__ import annotations

import itertools
import re

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
