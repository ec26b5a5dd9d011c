"""Rule fetch_hf_model: the work is run() in conch/model/fetch_hf_model_job.py."""

from conch.model.fetch_hf_model_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
