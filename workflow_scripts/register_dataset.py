"""Register the prepared splits with LLaMA-Factory (dataset_info.json beside them)."""

from pathlib import Path

from conch.workflow.registry import write_dataset_info

splits = {Path(p).stem: p for p in snakemake.input.splits}
info = write_dataset_info(snakemake.params.dataset, splits, snakemake.output[0])
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(f"registered {', '.join(info)} in {snakemake.output[0]}\n")
