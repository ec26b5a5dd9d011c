"""Rules train_preference (dpo, kto) and train_reward_model (rm): the work is run() in
conch/preference/pref_train_job.py."""

from conch.jobs.job import run_job
from conch.preference.pref_train_job import run

run_job(run, snakemake)
