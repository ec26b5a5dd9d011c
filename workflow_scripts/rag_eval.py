"""Rule rag_eval: the work is run() in conch/rag/rag_eval_job.py."""

from conch.rag.rag_eval_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
