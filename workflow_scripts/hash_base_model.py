"""Rule hash_base_model: the work is run() in conch/workflow/hash_base_model_job.py."""

from conch.workflow.hash_base_model_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
