"""Rule train_ppo: the work is run() in conch/preference/pref_ppo_job.py."""

from conch.preference.pref_ppo_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
