"""The same tiny experiment, run twice from nothing, gives the very same adapter weights.

Holds on CPU: the scratch base model is seeded, data splits are hashed, LLaMA-Factory seeds the trainer and
its shuffling (`seed` in config), lora_dropout is 0, and float reductions on the CPU kernels used here run in
a fixed order for a fixed thread count (both runs use the same `compute.threads`). On GPUs some kernels
(atomics in backward passes) are not deterministic; there compare metrics within a tolerance instead.
"""

from __future__ import annotations

import json

import pytest
from conftest import make_workdir, snakemake, tiny_config

pytestmark = pytest.mark.slow


def test_two_runs_from_scratch_give_identical_adapters(tiny_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    again = make_workdir(tmp_path / "again", tiny_config())
    snakemake(again, "results/manifests/default.json")
    first, second = (
        json.loads((run / "results/manifests/default.json").read_text()) for run in (tiny_run, again)
    )
    # Same inputs, recorded by the manifest...
    for key in ("config_sha256", "train_yaml_sha256"):
        assert first[key] == second[key], key
    assert first["data"] == second["data"]
    assert first["base_model"]["weights"] == second["base_model"]["weights"]
    assert first["installed_packages"]["sha256"] == second["installed_packages"]["sha256"]
    # ...same weights, tensor by tensor (a hash mismatch alone would not say where).
    tensors = [
        load_file(run / "results/adapters/default/adapter_model.safetensors") for run in (tiny_run, again)
    ]
    assert tensors[0].keys() == tensors[1].keys()
    differing = [name for name in tensors[0] if not torch.equal(tensors[0][name], tensors[1][name])]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
    assert first["trained_weights"]["sha256"] == second["trained_weights"]["sha256"]
