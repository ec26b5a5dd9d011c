"""Rule rag_ingest: the work is run() in conch/rag/rag_ingest_job.py."""

from conch.jobs.job import run_job
from conch.rag.rag_ingest_job import run

run_job(run, snakemake)
