"""Rule dequantize_gguf: the work is run() in conch/model/dequantize_gguf_job.py."""

from conch.model.dequantize_gguf_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
