"""Rule prepare_dataset: raw files -> train/val/test/rejects/stats (see docs/data.md)."""

from pathlib import Path

from conch.data import as_paths, prepare, settings_of
from conch.errors import ConfigError, reported

out_dir = Path(snakemake.output.train).parent
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    with reported("prepare_dataset", log):
        result = prepare(as_paths(snakemake.input.raw), **settings_of(snakemake.params))
        written = result.write(out_dir)
        # write() uses fixed names; a renamed rule output would otherwise never appear.
        for name, path in written.items():
            if Path(getattr(snakemake.output, name)) != path:
                raise ConfigError(f"rule output {name} must be {path}, got {getattr(snakemake.output, name)}")
    s = result.stats
    log.write(
        f"prepare_dataset: read {s['read']}, kept {s['kept']} (train {s['splits']['train']}, "
        f"val {s['splits']['val']}, test {s['splits']['test']}), rejected {s['rejected']} "
        f"{s['rejected_by_reason']} -> {out_dir}\n"
    )
