"""Rule build_scratch_model: the work is run() in conch/model/build_scratch_model_job.py."""

from conch.jobs.job import run_job
from conch.model.build_scratch_model_job import run

run_job(run, snakemake)
