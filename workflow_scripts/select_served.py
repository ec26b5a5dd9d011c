"""Rule select_served: the work is run() in conch/workflow/select_served_job.py."""

from conch.jobs.job import run_job
from conch.workflow.select_served_job import run

run_job(run, snakemake)
