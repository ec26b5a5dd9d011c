"""Rule rag_eval: the work is run() in conch/rag/rag_eval_job.py."""

from conch.jobs.job import run_job
from conch.rag.rag_eval_job import run

run_job(run, snakemake)
