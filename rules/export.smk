# GGUF export (docs/export.md): the fine-tuned model as .gguf files for llama.cpp / Ollama / LM Studio, each checked
# against that model, plus an Ollama Modelfile.
# Built when export.gguf lists a type (get_final_output in rules/common.smk).


rule export_gguf:
    input:
        # the merged LoRA model, or the full/freeze-trained one
        model=lambda wc: PLAN.tuned_model(wc.experiment),
        merge_check=lambda wc: PLAN.merge_check(wc.experiment),
    output:
        gguf=expand(
            "results/gguf/{{experiment}}/model-{type}.gguf", type=PLAN.export["gguf"]
        ),
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
        types=PLAN.export["gguf"],
        name=lambda wc: f"conch-{wc.experiment}",
        prompts=PLAN.merge["check_prompts"],
        new_tokens=PLAN.export["check"]["new_tokens"],
        min_top1=PLAN.export["check"]["min_top1"],
        max_logit_error=PLAN.export["check"]["max_logit_error"],
    script:
        "../workflow_scripts/export_gguf.py"
