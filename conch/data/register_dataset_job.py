"""Rule register_dataset: the prepared splits registered with LLaMA-Factory (dataset_info.json beside
them)."""

from pathlib import Path

from conch.llamafactory.registry import write_dataset_info


def run(input, output, params, log):
    splits = {Path(p).stem: p for p in input.splits}
    info = write_dataset_info(params.dataset, splits, output[0])
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(f"registered {', '.join(info)} in {output[0]}\n")
