"""Rule run_manifest: the work is run() in conch/workflow/run_manifest_job.py."""

from conch.jobs.job import run_job
from conch.workflow.run_manifest_job import run

run_job(run, snakemake)
