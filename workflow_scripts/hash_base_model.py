"""Rule hash_base_model: the work is run() in conch/workflow/hash_base_model_job.py."""

from conch.jobs.job import run_job
from conch.workflow.hash_base_model_job import run

run_job(run, snakemake)
