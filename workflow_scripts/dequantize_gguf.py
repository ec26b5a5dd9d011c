"""Rule dequantize_gguf: the work is run() in conch/model/dequantize_gguf_job.py."""

from conch.jobs.job import run_job
from conch.model.dequantize_gguf_job import run

run_job(run, snakemake)
