"""Rules train_adapter (LoRA) and train_model (full, freeze): the work is run() in
conch/training/train_adapter_job.py."""

from conch.training.train_adapter_job import run
from conch.workflow.job import run_job

run_job(run, snakemake)
