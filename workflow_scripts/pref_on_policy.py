"""Rule build_on_policy_pairs: the work is run() in conch/preference/pref_on_policy_job.py."""

from conch.preference.pref_on_policy_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
