"""Rule prepare_dataset: raw files -> train/val/test/rejects/stats (see docs/data.md)."""

import sys
from pathlib import Path

from conch.data import prepare
from conch.errors import ConchError, ConfigError

raw = snakemake.input.raw
# A named input holding one file arrives as a plain string, not a list.
paths = [raw] if isinstance(raw, str) else list(raw)
params = snakemake.params
out_dir = Path(snakemake.output.train).parent
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        result = prepare(
            paths,
            seed=params.seed,
            val_fraction=params.val_fraction,
            test_fraction=params.test_fraction,
            max_chars=params.max_chars,
            dedup=params.dedup,
        )
        written = result.write(out_dir)
        # write() uses fixed names; a renamed rule output would otherwise never appear.
        for name, path in written.items():
            if Path(getattr(snakemake.output, name)) != path:
                raise ConfigError(f"rule output {name} must be {path}, got {getattr(snakemake.output, name)}")
    except ConchError as e:
        log.write(f"prepare_dataset failed: {e}\n")
        print(f"prepare_dataset failed: {e}", file=sys.stderr)
        sys.exit(1)
    s = result.stats
    log.write(
        f"prepare_dataset: read {s['read']}, kept {s['kept']} (train {s['splits']['train']}, "
        f"val {s['splits']['val']}, test {s['splits']['test']}), rejected {s['rejected']} "
        f"{s['rejected_by_reason']} -> {out_dir}\n"
    )
