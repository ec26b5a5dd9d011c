"""Rule serve: the deployment (conch/server/deploy.py) with the job's params and files; a server that does not
answer as the model does offline fails the job with the reason."""

from __future__ import annotations

from pathlib import Path

from conch.cluster import gpus
from conch.errors import JobFailed
from conch.server.deploy import DeployError
from conch.server.deploy import run as deploy


def run(input, output, params, wildcards, log, resources, config):
    _gpus = gpus.assign_for(resources, config)  # local runs: this job's own GPUs, before CUDA starts
    Path(log).write_text("")  # the server appends to it
    try:
        deploy(
            experiment=wildcards.experiment,
            model_dir=input.model,
            serve=params.serve,
            chat_format=params.chat_format,
            prompt=params.prompt,
            rag_index=input.get("rag_index"),
            rag_questions=input.get("rag_questions"),
            config_path=output.config,
            manifest_path=output.manifest,
            smoke_path=output.smoke,
            log_path=log,
        )
    except DeployError as err:
        raise JobFailed(f"serve failed: {err}") from None
