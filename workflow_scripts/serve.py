"""Rule serve: the work is run() in conch/server/serve_job.py."""

from conch.jobs.job import run_job
from conch.server.serve_job import run

run_job(run, snakemake)
