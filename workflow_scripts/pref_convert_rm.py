"""Rule convert_reward_model: the work is run() in conch/preference/pref_convert_rm_job.py."""

from conch.jobs.job import run_job
from conch.preference.pref_convert_rm_job import run

run_job(run, snakemake)
