# GGUF export (docs/export.md): the fine-tuned model as .gguf files for llama.cpp / Ollama / LM Studio, each checked
# against that model, plus an Ollama Modelfile.
# Included when export.gguf lists a type (rules/common.smk: BRANCHES).
GGUF_TYPES = config["export"]["gguf"]


rule export_gguf:
    input:
        # the merged LoRA model, or the full/freeze-trained one (rules/finetuning.smk)
        model=lambda wc: tuned_model(wc.experiment),
        merge_check=lambda wc: merge_check(wc.experiment),
    output:
        gguf=expand("results/gguf/{{experiment}}/model-{type}.gguf", type=GGUF_TYPES),
        modelfile="results/gguf/{experiment}/Modelfile",
        check="results/gguf/{experiment}/check.json",
    log:
        "logs/export_gguf/{experiment}.log",
    benchmark:
        "benchmarks/export_gguf/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    threads: config["compute"]["threads"]
    resources:
        **gpu_resources(),
    params:
        types=GGUF_TYPES,
        name=lambda wc: f"conch-{wc.experiment}",
        prompts=config["merge"]["check_prompts"],
        new_tokens=config["export"]["check"]["new_tokens"],
        min_top1=config["export"]["check"]["min_top1"],
        max_logit_error=config["export"]["check"]["max_logit_error"],
    script:
        "../workflow_scripts/export_gguf.py"
