"""Models larger than one device are spread over the devices; serve leaves the GPU to the server."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.fixture(scope="module")
def meta_model():
    """An 8-layer Qwen2 on the meta device: sizes without weights, as load() plans a placement."""
    import torch
    from accelerate.utils import compute_module_sizes
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        vocab_size=1000,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model, compute_module_sizes(model)[""]


def test_a_model_that_fits_one_device_goes_whole_onto_the_first(meta_model):
    from conch.model.modeling import placement

    model, size = meta_model
    assert placement(model, {0: 2 * size, 1: 2 * size}) == 0


def test_a_model_larger_than_one_device_is_spread_layer_by_layer(meta_model):
    from conch.model.modeling import placement

    model, size = meta_model
    device_map = placement(model, {0: int(0.7 * size), 1: int(0.7 * size)})
    assert set(device_map.values()) == {0, 1}
    layers = {name: dev for name, dev in device_map.items() if name.startswith("model.layers.")}
    # Whole decoder layers, in order: the first ones on GPU 0, the rest on GPU 1.
    assert all(name.count(".") == 2 for name in layers), layers
    order = [layers[f"model.layers.{i}"] for i in range(8)]
    assert order == sorted(order) and device_map["model.embed_tokens"] == 0 and device_map["lm_head"] == 1


def test_what_no_gpu_holds_goes_to_host_memory_and_beyond_it_is_refused(meta_model):
    from conch.model.modeling import placement

    model, size = meta_model
    device_map = placement(model, {0: int(0.3 * size), 1: int(0.3 * size), "cpu": 4 * size})
    assert set(device_map.values()) == {0, 1, "cpu"}
    with pytest.raises(MemoryError, match="weights need"):
        placement(model, {0: int(0.2 * size), 1: int(0.2 * size)})


def test_serve_never_loads_the_model_in_its_own_process():
    """The serve job's process imports no torch (the server and the offline answer run in children), so it
    holds no CUDA memory while the server loads the model: its module-level imports, run in a fresh
    interpreter, leave torch, transformers and peft unloaded."""
    tree = ast.parse((REPO / "workflow_scripts" / "serve.py").read_text(encoding="utf-8"))
    imports = [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    probe = "\n".join(
        [*imports, "import sys", "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"]
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]", (proc.stdout, imports)
