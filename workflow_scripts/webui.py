"""Rule webui: the work is run() in conch/training/webui_job.py."""

from conch.jobs.job import run_job
from conch.training.webui_job import run

run_job(run, snakemake)
