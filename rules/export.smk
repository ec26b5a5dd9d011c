# GGUF export (docs/export.md): the merged model as .gguf files for llama.cpp / Ollama / LM Studio, each checked
# against the merged model, plus an Ollama Modelfile. Off while `export.gguf` is empty.
GGUF_TYPES = config["export"]["gguf"]
GGUF_OUTPUTS = (
    expand("results/gguf/{experiment}/check.json", experiment=EXPERIMENTS)
    if GGUF_TYPES
    else []
)
# What `all` builds of this branch (called by final_outputs in rules/common.smk).
gguf_outputs = lambda: GGUF_OUTPUTS


if GGUF_TYPES:

    rule export_gguf:
        input:
            model=rules.merge_adapter.output.model,
            merge_check=rules.merge_adapter.output.check,
            code=conch_code("export", "modeling"),
        output:
            gguf=expand(
                "results/gguf/{{experiment}}/model-{type}.gguf", type=GGUF_TYPES
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
            types=GGUF_TYPES,
            name=lambda wc: f"conch-{wc.experiment}",
            prompts=config["merge"]["check_prompts"],
            new_tokens=config["export"]["check"]["new_tokens"],
            min_top1=config["export"]["check"]["min_top1"],
            max_logit_error=config["export"]["check"]["max_logit_error"],
        script:
            "../workflow_scripts/export_gguf.py"
