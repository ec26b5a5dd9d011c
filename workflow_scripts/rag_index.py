"""Rule rag_index: the work is run() in conch/rag/rag_index_job.py."""

from conch.jobs.job import run_job
from conch.rag.rag_index_job import run

run_job(run, snakemake)
