"""Rule prepare_preference: raw pair/KTO files -> splits, rejects, stats and dataset_info.json."""

from pathlib import Path

from conch.data import as_paths, settings_of
from conch.errors import reported
from conch.preference.prepare import prepare_preference

out_dir = Path(snakemake.output.stats).parent
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    with reported("prepare_preference", log):
        result = prepare_preference(as_paths(snakemake.input.raw), **settings_of(snakemake.params))
    result.write(out_dir, snakemake.params.dataset)
    s = result.stats
    log.write(
        f"prepare_preference: read {s['read']}, kept {s['kept']}, pairs per split {s['splits']}, "
        f"KTO per split {s['kto_splits']}, rejected {s['rejected']} {s['rejected_by_reason']} -> {out_dir}\n"
    )
