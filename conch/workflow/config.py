"""Config checks that run before any job: every problem is reported with the key it concerns.

JSON schema does the typing; this module turns its errors into messages a person can act on
("config key train.lora_rank: 0 is less than the minimum of 1") and adds what a schema cannot say:
"did you mean" for misspelt keys, LLaMA-Factory template names, and keys the workflow owns.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import jsonschema

from conch.errors import ConfigError, did_you_mean
from conch.llamafactory.lf import RESERVED_TRAIN_KEYS, known_templates, known_train_keys
from conch.preference.checks import problems as preference_problems
from conch.workflow.experiments import all_experiments
from conch.workflow.layering import layer, without_train_nulls


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _unknown_keys(config: dict, schema: dict, path: tuple = ()) -> Iterator[str]:
    props = schema.get("properties")
    if not isinstance(config, dict) or props is None:
        return
    for key, value in config.items():
        if key in props:
            yield from _unknown_keys(value, props[key], (*path, key))
        elif schema.get("additionalProperties") is False:
            hint = did_you_mean(key, props, f"; known keys: {', '.join(sorted(props))}")
            yield f"config key {_key((*path, key))}: unknown key{hint}"


def _schema_errors(config: dict, schema: dict) -> Iterator[str]:
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if error.validator == "additionalProperties":
            continue  # reported with a suggestion by _unknown_keys
        yield f"config key {_key(error.absolute_path)}: {error.message}{_number_hint(error)}"


def _number_hint(error) -> str:
    """YAML 1.1 reads `1e-4` (no dot) as a string, a common surprise in learning rates."""
    if error.validator == "type" and isinstance(error.instance, str):
        try:
            float(error.instance)
        except ValueError:
            return ""
        return f" (YAML reads {error.instance} as text; write it with a dot, e.g. 1.0e-4)"
    return ""


def _grid_problems(config: dict, train_schema: dict) -> list[str]:
    """Grid keys are LLaMA-Factory training keys the workflow does not own, each value valid for its key."""
    grid = config.get("grid")
    if not isinstance(grid, dict):
        return []  # absent, or the schema check already names it
    found, known = [], known_train_keys()
    for key, values in grid.items():
        if key in RESERVED_TRAIN_KEYS:
            found.append(f"config key grid.{key}: set by the workflow; it cannot be swept")
        elif known is not None and key not in known:
            found.append(
                f"config key grid.{key}: not a LLaMA-Factory training argument{did_you_mean(key, known)}"
            )
        for i, value in enumerate(values if isinstance(values, list) else ()):
            merged = layer(config.get("train"), {key: value})
            for error in jsonschema.Draft202012Validator(train_schema).iter_errors(merged):
                if list(error.absolute_path)[:1] == [key]:
                    found.append(f"config key grid.{key}[{i}]: {error.message}{_number_hint(error)}")
    return found


def _experiment_problems(config: dict, default_experiments) -> list[str]:
    """Named plus grid experiments: at least one, no name twice, and a serve pin that names one of them."""
    config = {"experiments": default_experiments, **config}
    grid = config.get("grid") or {}
    if not isinstance(config["experiments"], dict) or not isinstance(grid, dict):
        return []  # the schema check already names it
    if not all(isinstance(values, list) for values in grid.values()):
        return []
    try:
        experiments = all_experiments(config)
    except ConfigError as err:
        return [str(err)]
    found = []
    pinned = (config.get("serve") or {}).get("experiment")
    if isinstance(pinned, str) and pinned not in experiments:
        hint = did_you_mean(pinned, experiments, f"; experiments: {', '.join(experiments)}")
        found.append(f"config key serve.experiment: {pinned!r} is not an experiment{hint}")
    return found


def _finetuning_problems(config: dict, default_experiments) -> list[str]:
    """Per experiment: what LLaMA-Factory or the DAG would refuse only once the experiment's job starts."""
    try:
        experiments = all_experiments({"experiments": default_experiments, **config})
    except (ConfigError, TypeError, AttributeError):
        return []  # reported by the experiment and grid checks
    pref = config.get("preference") if isinstance(config.get("preference"), dict) else {}
    found = []
    for name, overrides in experiments.items():
        train = layer(config.get("train"), overrides)
        kind = train.get("finetuning_type", "lora")
        on_cpu = not (config.get("compute") or {}).get("gpus")
        qlora = kind == "lora" and train.get("quantization_bit") is not None
        if qlora and on_cpu and train.get("eval_strategy", "no") != "no":
            found.append(
                f"config key train.eval_strategy: experiment {name!r} trains QLoRA (quantization_bit) on the CPU "
                "(compute.gpus: 0), where bitsandbytes' 4-bit matmul fails during evaluation on layers with a "
                "bias (Qwen2's q/k/v projections) after training has run; set eval_strategy: no for it, or give "
                "it a GPU (compute.gpus)"
            )
        if kind == "lora":
            continue
        if train.get("quantization_bit") is not None:
            found.append(
                f"config key train.quantization_bit: experiment {name!r} trains {kind}, but QLoRA quantizes a "
                "frozen base under a LoRA adapter (LLaMA-Factory refuses it with full or freeze); drop "
                "quantization_bit there or set finetuning_type: lora"
            )
        if pref.get("methods") and pref.get("start_from") == "adapter":
            found.append(
                f"config key preference.start_from: `adapter` goes on training the SFT LoRA adapter, but "
                f"experiment {name!r} trains {kind} and has none; use start_from: merged"
            )
    return found


def _unknown_train_keys(config: dict) -> list[str]:
    """`train` passes through to LLaMA-Factory, so its keys are checked against LLaMA-Factory's arguments."""
    known = known_train_keys()
    if known is None:
        return []
    blocks = [("train", config.get("train"))]
    blocks += [(f"experiments.{n}", o) for n, o in (config.get("experiments") or {}).items()]
    found = []
    for where, block in blocks:
        for key in block if isinstance(block, dict) else ():
            if key not in known:
                hint = did_you_mean(key, known)
                found.append(f"config key {where}.{key}: not a LLaMA-Factory training argument{hint}")
    return found


def problems(config: dict, schema: dict) -> list[str]:
    config = without_train_nulls(config)
    found = [*_unknown_keys(config, schema), *_schema_errors(config, schema)]
    for key in sorted(RESERVED_TRAIN_KEYS & set(config.get("train") or {})):
        found.append(f"config key train.{key}: set by the workflow from the DAG; remove it from config")
    train_schema = {**schema["properties"]["train"], "definitions": schema.get("definitions", {})}
    for name, overrides in (config.get("experiments") or {}).items():
        if not isinstance(overrides, dict):
            continue  # the schema check above already names it
        for key in sorted(RESERVED_TRAIN_KEYS & set(overrides)):
            found.append(f"config key experiments.{name}.{key}: set by the workflow; remove it")
        merged = layer(config.get("train"), overrides)
        for error in jsonschema.Draft202012Validator(train_schema).iter_errors(merged):
            if set(error.absolute_path) & set(overrides):
                found.append(f"config key experiments.{name}.{_key(error.absolute_path)}: {error.message}")
    found += _unknown_train_keys(config)
    found += preference_problems(config)
    grid_found = _grid_problems(config, train_schema)
    default_experiments = schema["properties"]["experiments"].get("default")
    found += grid_found or _experiment_problems(config, default_experiments)
    found += _finetuning_problems(config, default_experiments)
    templates = known_templates()
    template = config.get("template")
    if templates is not None and isinstance(template, str) and template not in templates:
        close = difflib.get_close_matches(template, sorted(templates), n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        found.append(f"config key template: {template!r} is not a LLaMA-Factory template{hint}")
    return found


def check(config: dict, schema: dict, source: str = "config") -> None:
    """Raise ConfigError listing every problem, or return quietly."""
    found = problems(config, schema)
    if found:
        raise ConfigError(f"{len(found)} problem(s) in {source}:\n  " + "\n  ".join(found))
