"""Rule export_gguf: the work is run() in conch/export/export_gguf_job.py."""

from conch.export.export_gguf_job import run
from conch.jobs.job import run_job

run_job(run, snakemake)
