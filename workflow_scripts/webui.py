"""Rule webui: the work is run() in conch/training/webui_job.py."""

from conch.training.webui_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
