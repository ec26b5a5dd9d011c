"""Rule evaluate: the work is run() in conch/evaluation/evaluate_job.py."""

from conch.evaluation.evaluate_job import run
from conch.jobs.job import run_job

run_job(run, snakemake)
