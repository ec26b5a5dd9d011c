"""Rule use_local_model: the work is run() in conch/model/use_local_model_job.py."""

from conch.jobs.job import run_job
from conch.model.use_local_model_job import run

run_job(run, snakemake)
