"""Rule build_on_policy_pairs: the work is run() in conch/preference/pref_on_policy_job.py."""

from conch.jobs.job import run_job
from conch.preference.pref_on_policy_job import run

run_job(run, snakemake)
