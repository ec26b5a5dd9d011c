"""Rule measure_token_lengths: the work is run() in conch/training/measure_token_lengths_job.py."""

from conch.jobs.job import run_job
from conch.training.measure_token_lengths_job import run

run_job(run, snakemake)
