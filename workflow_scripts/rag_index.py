"""Rule rag_index: the work is run() in conch/rag/rag_index_job.py."""

from conch.rag.rag_index_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
