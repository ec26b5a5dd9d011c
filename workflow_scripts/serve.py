"""Deploy manifest + smoke test (conch.server.deploy): the rule's params and files into `run`."""

from conch.cluster import gpus
from conch.errors import reported
from conch.server.deploy import run

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p, inp, out = snakemake.params, snakemake.input, snakemake.output
open(snakemake.log[0], "w").close()  # the server appends to it
with open(snakemake.log[0], "a", encoding="utf-8") as log, reported("serve", log):
    run(
        experiment=snakemake.wildcards.experiment,
        model_dir=inp.model,
        serve=p.serve,
        chat_format=p.chat_format,
        prompt=p.prompt,
        rag_index=inp.get("rag_index"),
        rag_questions=inp.get("rag_questions"),
        config_path=out.config,
        manifest_path=out.manifest,
        smoke_path=out.smoke,
        log_path=snakemake.log[0],
    )
