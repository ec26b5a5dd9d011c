"""Rule use_local_model: the work is run() in conch/model/use_local_model_job.py."""

from conch.model.use_local_model_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
