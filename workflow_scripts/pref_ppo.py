"""Rule train_ppo: the work is run() in conch/preference/pref_ppo_job.py."""

from conch.jobs.job import run_job
from conch.preference.pref_ppo_job import run

run_job(run, snakemake)
