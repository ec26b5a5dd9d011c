"""Rules train_preference (dpo, kto) and train_reward_model (rm): the work is run() in
conch/preference/pref_train_job.py."""

from conch.preference.pref_train_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
