"""Rule prepare_preference: raw pair/KTO files -> splits, rejects, stats and dataset_info.json."""

import sys
from pathlib import Path

from conch.errors import ConchError
from conch.preference.prepare import prepare_preference

raw = snakemake.input.raw
paths = [raw] if isinstance(raw, str) else list(raw)
p = snakemake.params
out_dir = Path(snakemake.output.stats).parent
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    try:
        result = prepare_preference(
            paths,
            seed=p.get("seed", 42),
            val_fraction=p.get("val_fraction", 0.1),
            test_fraction=p.get("test_fraction", 0.2),
            max_chars=p.get("max_chars", 8000),
            dedup=p.get("dedup", True),
        )
    except ConchError as e:
        log.write(f"prepare_preference failed: {e}\n")
        sys.exit(f"prepare_preference failed: {e}")
    result.write(out_dir, p.dataset)
    s = result.stats
    log.write(
        f"prepare_preference: read {s['read']}, kept {s['kept']}, pairs per split {s['splits']}, "
        f"KTO per split {s['kto_splits']}, rejected {s['rejected']} {s['rejected_by_reason']} -> {out_dir}\n"
    )
