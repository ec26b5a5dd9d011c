"""Rule fetch_hf_model: the work is run() in conch/model/fetch_hf_model_job.py."""

from conch.jobs.job import run_job
from conch.model.fetch_hf_model_job import run

run_job(run, snakemake)
