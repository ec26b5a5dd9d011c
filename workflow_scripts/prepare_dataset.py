"""Rule prepare_dataset: the work is run() in conch/data/prepare_dataset_job.py."""

from conch.data.prepare_dataset_job import run
from conch.jobs.job import run_job

run_job(run, snakemake)
