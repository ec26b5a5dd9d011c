"""Rule rag_ingest: the work is run() in conch/rag/rag_ingest_job.py."""

from conch.rag.rag_ingest_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
