"""Rule convert_reward_model: the work is run() in conch/preference/pref_convert_rm_job.py."""

from conch.preference.pref_convert_rm_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
