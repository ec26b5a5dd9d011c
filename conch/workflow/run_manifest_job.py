"""Rule run_manifest: everything needed to trace and repeat one experiment's training, in one JSON file."""

import json
import platform
import sys
from pathlib import Path

import yaml

from conch.workflow.provenance import (
    base_model_revision,
    git_state,
    package_set,
    package_versions,
    sha256_file,
    sha256_json,
    weights_sha256,
)


def run(input, output, params, log, wildcards, scriptdir):
    experiment = wildcards.experiment
    base = json.loads(Path(input.base).read_text(encoding="utf-8"))
    train_args = yaml.safe_load(Path(input.train_yaml).read_text(encoding="utf-8"))
    splits = {Path(path).stem: sha256_file(path) for path in input.splits}
    # LoRA: the adapter file; full/freeze: the trained model directory.
    trained = weights_sha256(input.trained)

    manifest = {
        "experiment": experiment,
        "overrides": params.overrides,
        "config_sha256": sha256_json(params.settings),
        "settings": params.settings,
        "llamafactory_train_yaml": train_args,
        "train_yaml_sha256": sha256_json(train_args),
        "data": {
            # The model sees train (and val for eval loss); test is listed so eval results trace too.
            "data_sha256": sha256_json([splits.get("train"), splits.get("val")]),
            "splits_sha256": splits,
            "dataset_info_sha256": sha256_file(input.dataset_info),
        },
        "base_model": {
            "revision": base_model_revision(base),
            # Every weight file of the base, hashed once per base model (rule hash_base_model).
            "weights": json.loads(Path(input.base_weights).read_text(encoding="utf-8")),
            "manifest": base,
        },
        "finetuning_type": params.settings["train"].get("finetuning_type", "lora"),
        "trained_weights": {"path": input.trained, **trained},
        "packages": {"python": platform.python_version(), **package_versions()},
        "installed_packages": package_set(),
        "platform": platform.platform(),
        # The script's folder (workflow_scripts/) sits in the workflow checkout.
        "code": {
            **git_state(Path(scriptdir).parent),
            "recorded": "when this manifest was written, right after training",
        },
        "repeat": [
            f"llamafactory-cli train {input.train_yaml}",
            # A fresh directory: LLaMA-Factory would resume from a checkpoint left in the old one.
            f"rm -r {Path(input.train_yaml).parent} && snakemake --cores all {input.trained}",
        ],
    }
    Path(output[0]).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(
            f"{experiment}: config {manifest['config_sha256'][:12]} data {manifest['data']['data_sha256'][:12]} "
            f"trained {trained['sha256'][:12]} packages {manifest['installed_packages']['sha256'][:12]} "
            f"(python {sys.version.split()[0]})\n"
        )
