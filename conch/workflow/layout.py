"""Where the stages' outputs live: the paths one rule declares and later rules take as inputs.

The rule files declare these same paths as outputs; the plan (conch/workflow/plan.py) answers with them for
a given experiment, so an input function never looks another rule up.
"""

from __future__ import annotations

# Each base-model source has its own folder, so the four rules can all be defined; the plan picks one.
BASE_MODEL_SOURCES = ("scratch", "hf", "gguf", "local")
BASE_MANIFEST = "results/base_model/{source}/manifest.json"

# LoRA trains an adapter (train_adapter) merged into the base (merge_adapter); full and freeze train the
# model itself (train_model).
TRAINING = {
    "lora": {
        "adapter": "results/adapters/{experiment}/adapter_model.safetensors",
        "train_yaml": "results/adapters/{experiment}/train_config.yaml",
        "trainer_log": "results/adapters/{experiment}/trainer_log.jsonl",
        "loss_plot": "results/adapters/{experiment}/training_loss.png",
        "benchmark": "benchmarks/train_adapter/{experiment}.tsv",
    },
    "model": {
        "model": "results/trained/{experiment}/model",
        "train_yaml": "results/trained/{experiment}/train_config.yaml",
        "trainer_log": "results/trained/{experiment}/trainer_log.jsonl",
        "loss_plot": "results/trained/{experiment}/training_loss.png",
        "benchmark": "benchmarks/train_model/{experiment}.tsv",
    },
}
MERGED_MODEL = "results/merged/{experiment}/model"
MERGE_CHECK = "results/merged/{experiment}/merge_check.json"
# dpo, kto and ppo models (rules/preference.smk), and the reward model PPO scores with.
ALIGNED_MODEL = "results/{method}/{experiment}/model"
REWARD_MODEL = "results/reward_model/{experiment}/model"
