"""Rule rag_chunk: the work is run() in conch/rag/rag_chunk_job.py."""

from conch.rag.rag_chunk_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
