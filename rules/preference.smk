# Preference tuning branch (docs/preference.md): preference pairs -> DPO/KTO adapters, a reward model and
# PPO on top of each experiment's SFT model -> a side-by-side evaluation; `serve` serves the aligned model.
# Included when preference.methods names a method (rules/common.smk: BRANCHES); the default config has none.
from conch.preference.stages import ppo_lora_settings

PREF = config["preference"]
PREF_METHODS = PREF["methods"]
PREF_DATASET = PREF.get("dataset") or f"{DATASET}_pref"
PREF_DIR = f"results/data/{PREF_DATASET}"
PPO_CFG = PREF["ppo"]
# PPO's reward model: the one `stage: rm` trains here, or a directory named in config.
RM_TRAINED = "ppo" in PREF_METHODS and PPO_CFG.get("reward_model") == "train"
# The pairs DPO/KTO and the reward model train on: the given ones, or (on_policy) their chosen answers
# against the experiment's SFT model's own answers (rule build_on_policy_pairs, conch/preference/on_policy.py).
ON_POLICY = PREF["pairs"] == "on_policy"
TRAIN_PAIRS_DATASET = f"{PREF_DATASET}_on_policy" if ON_POLICY else PREF_DATASET
TRAIN_PAIRS_DIR = (
    f"results/data/{TRAIN_PAIRS_DATASET}/{{experiment}}" if ON_POLICY else PREF_DIR
)
TRAIN_PAIRS = lambda name: lambda wc: f"{TRAIN_PAIRS_DIR}/{name}".format(**wc)


# The experiment's fine-tuned model (merged LoRA, or full/freeze-trained; rules/train.smk), and its LoRA
# adapter where it has one (start_from: adapter needs it; conch/preference/checks.py refuses it otherwise).
# The stages train a LoRA adapter on the SFT model whatever the experiment's finetuning_type: a full or
# freeze SFT model is aligned the same way as a merged LoRA one.
PREF_LORA = {"finetuning_type": "lora"}
SFT_MODEL = lambda wc: tuned_model(wc.experiment)
SFT_ADAPTER = lambda wc: (
    training_output(wc.experiment, "adapter")
    if finetuning_type(wc.experiment) == "lora"
    else []
)
RM_DIR = (
    "results/reward_model/{experiment}/model"
    if RM_TRAINED
    else PPO_CFG.get("reward_model")
)


wildcard_constraints:
    method="dpo|kto",


rule prepare_preference:
    input:
        raw=PREF["data"]["raw"],
    output:
        train=f"{PREF_DIR}/train.jsonl",
        val=f"{PREF_DIR}/val.jsonl",
        test=f"{PREF_DIR}/test.jsonl",
        kto_train=f"{PREF_DIR}/kto_train.jsonl",
        kto_val=f"{PREF_DIR}/kto_val.jsonl",
        kto_test=f"{PREF_DIR}/kto_test.jsonl",
        rejects=f"{PREF_DIR}/rejects.jsonl",
        stats=f"{PREF_DIR}/stats.json",
        dataset_info=f"{PREF_DIR}/dataset_info.json",
    log:
        f"logs/prepare_preference/{PREF_DATASET}.log",
    benchmark:
        f"benchmarks/prepare_preference/{PREF_DATASET}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **{k: v for k, v in PREF["data"].items() if k != "raw"},
        dataset=PREF_DATASET,
    script:
        "../workflow_scripts/pref_prepare.py"


if ON_POLICY:

    # The training env: it reads and writes the pair splits as prepare_preference does (pandas, pyarrow).
    rule build_on_policy_pairs:
        input:
            train=rules.prepare_preference.output.train,
            val=rules.prepare_preference.output.val,
            sft_model=SFT_MODEL,
        output:
            train=f"{TRAIN_PAIRS_DIR}/train.jsonl",
            val=f"{TRAIN_PAIRS_DIR}/val.jsonl",
            kto_train=f"{TRAIN_PAIRS_DIR}/kto_train.jsonl",
            kto_val=f"{TRAIN_PAIRS_DIR}/kto_val.jsonl",
            stats=f"{TRAIN_PAIRS_DIR}/stats.json",
            dataset_info=f"{TRAIN_PAIRS_DIR}/dataset_info.json",
        log:
            "logs/build_on_policy_pairs/{experiment}.log",
        benchmark:
            "benchmarks/build_on_policy_pairs/{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            max_new_tokens=PREF["eval"]["max_new_tokens"],
            batch_size=config["eval"]["batch_size"],
            dataset=TRAIN_PAIRS_DATASET,
        script:
            "../workflow_scripts/pref_on_policy.py"


if set(PREF_METHODS) & {"dpo", "kto"}:

    rule train_preference:
        input:
            dataset_info=TRAIN_PAIRS("dataset_info.json"),
            train=lambda wc: TRAIN_PAIRS(
                "kto_train.jsonl" if wc.method == "kto" else "train.jsonl"
            )(wc),
            val=TRAIN_PAIRS("val.jsonl"),
            sft_model=SFT_MODEL,
            sft_adapter=SFT_ADAPTER,
            base=BASE_MANIFEST,
        output:
            adapter="results/{method}/{experiment}/adapter/adapter_model.safetensors",
            train_yaml="results/{method}/{experiment}/adapter/train_config.yaml",
            trainer_log="results/{method}/{experiment}/adapter/trainer_log.jsonl",
            loss_plot="results/{method}/{experiment}/adapter/training_loss.png",
        log:
            "logs/train_preference/{method}_{experiment}.log",
        benchmark:
            "benchmarks/train_preference/{method}_{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            train=lambda wc: train_config(
                wc.experiment, PREF_LORA, PREF["train"], STAGE_NULLS["train"]
            ),
            start_from=PREF["start_from"],
            dataset=TRAIN_PAIRS_DATASET,
            template=config["template"],
        script:
            "../workflow_scripts/pref_train.py"

    rule merge_preference:
        input:
            adapter=rules.train_preference.output.adapter,
            sft_model=SFT_MODEL,
            base=BASE_MANIFEST,
        output:
            model=directory("results/{method}/{experiment}/model"),
            export_yaml="results/{method}/{experiment}/export_config.yaml",
        log:
            "logs/merge_preference/{method}_{experiment}.log",
        benchmark:
            "benchmarks/merge_preference/{method}_{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            train=lambda wc: train_config(
                wc.experiment, PREF_LORA, PREF["train"], STAGE_NULLS["train"]
            ),
            start_from=PREF["start_from"],
            template=config["template"],
        script:
            "../workflow_scripts/pref_merge.py"


if RM_TRAINED:

    rule train_reward_model:
        input:
            dataset_info=TRAIN_PAIRS("dataset_info.json"),
            train=TRAIN_PAIRS("train.jsonl"),
            val=TRAIN_PAIRS("val.jsonl"),
            sft_model=SFT_MODEL,
            sft_adapter=SFT_ADAPTER,
            base=BASE_MANIFEST,
        output:
            adapter="results/reward_model/{experiment}/adapter/adapter_model.safetensors",
            value_head="results/reward_model/{experiment}/adapter/value_head.safetensors",
            train_yaml="results/reward_model/{experiment}/adapter/train_config.yaml",
            trainer_log="results/reward_model/{experiment}/adapter/trainer_log.jsonl",
            loss_plot="results/reward_model/{experiment}/adapter/training_loss.png",
        log:
            "logs/train_reward_model/{experiment}.log",
        benchmark:
            "benchmarks/train_reward_model/{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            train=lambda wc: train_config(
                wc.experiment,
                PREF_LORA,
                PREF["reward_model"]["train"],
                STAGE_NULLS["reward_model"],
            ),
            start_from="merged",
            dataset=TRAIN_PAIRS_DATASET,
            template=config["template"],
            stage="rm",
        script:
            "../workflow_scripts/pref_train.py"

    # LLaMA-Factory's adapter + value head -> a sequence-classification model that TRL's PPO can use,
    # checked against LLaMA-Factory's own `do_predict` scores on the held-out pairs.
    rule convert_reward_model:
        input:
            adapter=rules.train_reward_model.output.adapter,
            value_head=rules.train_reward_model.output.value_head,
            sft_model=SFT_MODEL,
            dataset_info=rules.prepare_preference.output.dataset_info,
            test=rules.prepare_preference.output.test,
            train=rules.prepare_preference.output.train,
        output:
            model=directory("results/reward_model/{experiment}/model"),
            predict_yaml="results/reward_model/{experiment}/predict_config.yaml",
            check="results/reward_model/{experiment}/conversion_check.json",
        log:
            "logs/convert_reward_model/{experiment}.log",
        benchmark:
            "benchmarks/convert_reward_model/{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            train=lambda wc: train_config(
                wc.experiment,
                PREF_LORA,
                PREF["reward_model"]["train"],
                STAGE_NULLS["reward_model"],
            ),
            dataset=PREF_DATASET,
            template=config["template"],
        script:
            "../workflow_scripts/pref_convert_rm.py"


if "ppo" in PREF_METHODS:

    rule train_ppo:
        input:
            sft_model=SFT_MODEL,
            reward_model=RM_DIR,
            prompts=(
                [
                    rules.prepare_preference.output.train,
                    rules.prepare_preference.output.kto_train,
                ]
                if PPO_CFG.get("prompts") == "preference"
                else [rules.prepare_dataset.output.train]
            ),
            eval_prompts=(
                rules.prepare_preference.output.val
                if PPO_CFG.get("prompts") == "preference"
                else rules.prepare_dataset.output.val
            ),
        output:
            model=directory("results/ppo/{experiment}/model"),
            adapter=directory("results/ppo/{experiment}/adapter"),
            ppo_yaml="results/ppo/{experiment}/ppo_config.yaml",
            ppo_log="results/ppo/{experiment}/ppo_log.jsonl",
            reward_plot="results/ppo/{experiment}/training_rewards.png",
        log:
            "logs/train_ppo/{experiment}.log",
        benchmark:
            "benchmarks/train_ppo/{experiment}.tsv"
        conda:
            "../envs/train.yaml"
        threads: config["compute"]["threads"]
        resources:
            **gpu_resources(),
        params:
            lora=lambda wc: ppo_lora_settings(
                train_config(
                    wc.experiment, PREF_LORA, PREF["train"], STAGE_NULLS["train"]
                )
            ),
            ppo=PPO_CFG["train"],
            max_prompts=PPO_CFG.get("max_prompts"),
        script:
            "../workflow_scripts/pref_ppo.py"


rule evaluate_preference:
    input:
        pairs=rules.prepare_preference.output.test,
        sft_test=rules.prepare_dataset.output.test,
        sft_model=SFT_MODEL,
        aligned=[f"results/{m}/{{experiment}}/model" for m in PREF_METHODS],
        reward_model=RM_DIR if "ppo" in PREF_METHODS else [],
    output:
        metrics="results/eval_preference/{experiment}/metrics.json",
        samples="results/eval_preference/{experiment}/samples.tsv",
        chart="results/eval_preference/{experiment}/preference.png",
        report="results/eval_preference/{experiment}/report.html",
    log:
        "logs/evaluate_preference/{experiment}.log",
    benchmark:
        "benchmarks/evaluate_preference/{experiment}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        methods=PREF_METHODS,
        max_samples=PREF["eval"].get("max_samples"),
        max_new_tokens=PREF["eval"]["max_new_tokens"],
        batch_size=config["eval"]["batch_size"],
        persona_names=config["eval"]["persona_names"],
        pairs=PREF["pairs"],
    script:
        "../workflow_scripts/pref_evaluate.py"
