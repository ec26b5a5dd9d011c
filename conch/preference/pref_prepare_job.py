"""Rule prepare_preference: raw pair/KTO files -> splits, rejects, stats and dataset_info.json."""

from pathlib import Path

from conch.data.screen import settings_of
from conch.errors import ConchError, JobFailed
from conch.jobs.files import as_paths
from conch.preference.prepare import prepare_preference


def run(input, output, params, log):
    out_dir = Path(output.stats).parent
    with open(log, "w", encoding="utf-8") as fh:
        try:
            result = prepare_preference(as_paths(input.raw), **settings_of(params))
        except ConchError as err:
            raise JobFailed(f"prepare_preference failed: {err}") from err
        result.write(out_dir, params.dataset)
        s = result.stats
        fh.write(
            f"prepare_preference: read {s['read']}, kept {s['kept']}, pairs per split {s['splits']}, "
            f"KTO per split {s['kto_splits']}, rejected {s['rejected']} {s['rejected_by_reason']} -> {out_dir}\n"
        )
