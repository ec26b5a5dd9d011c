"""Rule merge_adapter: the work is run() in conch/training/merge_adapter_job.py."""

from conch.training.merge_adapter_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
