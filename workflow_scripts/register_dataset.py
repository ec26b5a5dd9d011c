"""Rule register_dataset: the work is run() in conch/workflow/register_dataset_job.py."""

from conch.workflow.job import run_job
from conch.workflow.register_dataset_job import run

run_job(run, snakemake)
