"""Rules train_adapter (LoRA) and train_model (full, freeze): the work is run() in
conch/training/train_adapter_job.py."""

from conch.jobs.job import run_job
from conch.training.train_adapter_job import run

run_job(run, snakemake)
