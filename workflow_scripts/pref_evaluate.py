"""Rule evaluate_preference: the work is run() in conch/preference/pref_evaluate_job.py."""

from conch.jobs.job import run_job
from conch.preference.pref_evaluate_job import run

run_job(run, snakemake)
