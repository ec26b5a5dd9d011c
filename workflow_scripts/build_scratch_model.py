"""Rule build_scratch_model: the work is run() in conch/model/build_scratch_model_job.py."""

from conch.model.build_scratch_model_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
