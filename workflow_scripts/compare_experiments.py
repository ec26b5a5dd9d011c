"""Checkpoint compare_experiments: the work is run() in conch/evaluation/compare_experiments_job.py."""

from conch.evaluation.compare_experiments_job import run
from conch.jobs.job import run_job

run_job(run, snakemake)
