"""Rule merge_adapter: the work is run() in conch/training/merge_adapter_job.py."""

from conch.jobs.job import run_job
from conch.training.merge_adapter_job import run

run_job(run, snakemake)
