"""Rule register_dataset: the work is run() in conch/data/register_dataset_job.py."""

from conch.data.register_dataset_job import run
from conch.jobs.job import run_job

run_job(run, snakemake)
