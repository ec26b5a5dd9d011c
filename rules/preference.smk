# Preference tuning branch (docs/preference.md): preference pairs -> DPO/KTO adapters, a reward model and
# PPO on top of each experiment's SFT model -> a side-by-side evaluation; `serve` serves the aligned model.
# Built when preference.methods names a method (get_final_output in rules/common.smk; the default config has
# none), with the settings of PLAN.preference (conch/workflow/plan.py). Every stage starts from the
# experiment's fine-tuned model (merged LoRA, or full/freeze-trained), and from its LoRA adapter where it has
# one (start_from: adapter needs it; conch/preference/checks.py refuses it otherwise).


rule prepare_preference:
    input:
        raw=list(PLAN.preference.raw),
    output:
        train=f"{PLAN.preference.dir}/train.jsonl",
        val=f"{PLAN.preference.dir}/val.jsonl",
        test=f"{PLAN.preference.dir}/test.jsonl",
        kto_train=f"{PLAN.preference.dir}/kto_train.jsonl",
        kto_val=f"{PLAN.preference.dir}/kto_val.jsonl",
        kto_test=f"{PLAN.preference.dir}/kto_test.jsonl",
        rejects=f"{PLAN.preference.dir}/rejects.jsonl",
        stats=f"{PLAN.preference.dir}/stats.json",
        dataset_info=f"{PLAN.preference.dir}/dataset_info.json",
    log:
        f"logs/prepare_preference/{PLAN.preference.dataset}.log",
    benchmark:
        f"benchmarks/prepare_preference/{PLAN.preference.dataset}.tsv"
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        **PLAN.preference.data,
        dataset=PLAN.preference.dataset,
    script:
        "../workflow_scripts/pref_prepare.py"


# With pairs: on_policy, dpo/kto and the reward model train on the chosen answers against the SFT model's own
# answers (conch/preference/on_policy.py). The training env: it reads and writes the pair splits as
# prepare_preference does (pandas, pyarrow).
rule build_on_policy_pairs:
    input:
        train=rules.prepare_preference.output.train,
        val=rules.prepare_preference.output.val,
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
    output:
        train=f"{PLAN.preference.on_policy_dir}/train.jsonl",
        val=f"{PLAN.preference.on_policy_dir}/val.jsonl",
        kto_train=f"{PLAN.preference.on_policy_dir}/kto_train.jsonl",
        kto_val=f"{PLAN.preference.on_policy_dir}/kto_val.jsonl",
        stats=f"{PLAN.preference.on_policy_dir}/stats.json",
        dataset_info=f"{PLAN.preference.on_policy_dir}/dataset_info.json",
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
        max_new_tokens=PLAN.preference.eval["max_new_tokens"],
        batch_size=PLAN.eval["batch_size"],
        dataset=PLAN.preference.on_policy_dataset,
    script:
        "../workflow_scripts/pref_on_policy.py"


rule train_preference:
    input:
        dataset_info=PLAN.preference.pairs_file("dataset_info.json"),
        train=lambda wc: PLAN.preference.pairs_file(
            "kto_train.jsonl" if wc.method == "kto" else "train.jsonl", wc.experiment
        ),
        val=PLAN.preference.pairs_file("val.jsonl"),
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        sft_adapter=lambda wc: PLAN.sft_adapter(wc.experiment),
        base=PLAN.base_manifest,
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
        train=lambda wc: PLAN.pref_train(wc.experiment),
        start_from=PLAN.preference.start_from,
        dataset=PLAN.preference.pairs_dataset,
        template=PLAN.template,
    script:
        "../workflow_scripts/pref_train.py"


rule merge_preference:
    input:
        adapter=rules.train_preference.output.adapter,
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        base=PLAN.base_manifest,
    output:
        model=directory(layout.ALIGNED_MODEL),
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
        train=lambda wc: PLAN.pref_train(wc.experiment),
        start_from=PLAN.preference.start_from,
        template=PLAN.template,
    script:
        "../workflow_scripts/pref_merge.py"


# PPO's reward model, when preference.ppo.reward_model is `train`: `stage: rm` on the dpo/kto pairs.
rule train_reward_model:
    input:
        dataset_info=PLAN.preference.pairs_file("dataset_info.json"),
        train=PLAN.preference.pairs_file("train.jsonl"),
        val=PLAN.preference.pairs_file("val.jsonl"),
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        sft_adapter=lambda wc: PLAN.sft_adapter(wc.experiment),
        base=PLAN.base_manifest,
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
        train=lambda wc: PLAN.rm_train(wc.experiment),
        start_from="merged",
        dataset=PLAN.preference.pairs_dataset,
        template=PLAN.template,
        stage="rm",
    script:
        "../workflow_scripts/pref_train.py"


# LLaMA-Factory's adapter + value head -> a sequence-classification model that TRL's PPO can use,
# checked against LLaMA-Factory's own `do_predict` scores on the held-out pairs.
rule convert_reward_model:
    input:
        adapter=rules.train_reward_model.output.adapter,
        value_head=rules.train_reward_model.output.value_head,
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        dataset_info=rules.prepare_preference.output.dataset_info,
        test=rules.prepare_preference.output.test,
        train=rules.prepare_preference.output.train,
    output:
        model=directory(layout.REWARD_MODEL),
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
        train=lambda wc: PLAN.rm_train(wc.experiment),
        dataset=PLAN.preference.dataset,
        template=PLAN.template,
    script:
        "../workflow_scripts/pref_convert_rm.py"


rule train_ppo:
    input:
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        reward_model=lambda wc: PLAN.reward_model(wc.experiment),
        prompts=(
            [
                rules.prepare_preference.output.train,
                rules.prepare_preference.output.kto_train,
            ]
            if PLAN.preference.ppo.prompts == "preference"
            else [rules.prepare_dataset.output.train]
        ),
        eval_prompts=(
            rules.prepare_preference.output.val
            if PLAN.preference.ppo.prompts == "preference"
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
        lora=lambda wc: PLAN.ppo_lora(wc.experiment),
        # PPOConfig's keys: PPO_DEFAULTS under preference.ppo.train (conch/workflow/layering.py).
        ppo=PLAN.preference.ppo.config,
        max_prompts=PLAN.preference.ppo.max_prompts,
    script:
        "../workflow_scripts/pref_ppo.py"


rule evaluate_preference:
    input:
        pairs=rules.prepare_preference.output.test,
        sft_test=rules.prepare_dataset.output.test,
        sft_model=lambda wc: PLAN.tuned_model(wc.experiment),
        aligned=lambda wc: [
            PLAN.aligned_model(m, wc.experiment) for m in PLAN.preference.methods
        ],
        reward_model=lambda wc: PLAN.reward_model(wc.experiment),
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
        methods=list(PLAN.preference.methods),
        max_samples=PLAN.preference.eval.get("max_samples"),
        max_new_tokens=PLAN.preference.eval["max_new_tokens"],
        batch_size=PLAN.eval["batch_size"],
        persona_names=PLAN.eval["persona_names"],
        pairs=PLAN.preference.pairs,
    script:
        "../workflow_scripts/pref_evaluate.py"
