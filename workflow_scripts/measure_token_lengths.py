"""Rule measure_token_lengths: the work is run() in conch/training/measure_token_lengths_job.py."""

from conch.training.measure_token_lengths_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
