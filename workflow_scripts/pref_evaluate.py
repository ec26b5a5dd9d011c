"""Rule evaluate_preference: the work is run() in conch/preference/pref_evaluate_job.py."""

from conch.preference.pref_evaluate_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
