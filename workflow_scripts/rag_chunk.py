"""Rule rag_chunk: the work is run() in conch/rag/rag_chunk_job.py."""

from conch.jobs.job import run_job
from conch.rag.rag_chunk_job import run

run_job(run, snakemake)
