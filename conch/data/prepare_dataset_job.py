"""Rule prepare_dataset: raw files -> train/val/test/rejects/stats (see docs/data.md)."""

from pathlib import Path

from conch.data.pipeline import prepare
from conch.data.screen import settings_of
from conch.errors import ConchError, ConfigError, JobFailed
from conch.jobs.files import as_paths


def run(input, output, params, log):
    out_dir = Path(output.train).parent
    with open(log, "w", encoding="utf-8") as fh:
        try:
            result = prepare(as_paths(input.raw), **settings_of(params))
            written = result.write(out_dir)
            # write() uses fixed names; a renamed rule output would otherwise never appear.
            for name, path in written.items():
                if Path(getattr(output, name)) != path:
                    raise ConfigError(f"rule output {name} must be {path}, got {getattr(output, name)}")
        except ConchError as err:
            raise JobFailed(f"prepare_dataset failed: {err}") from err
        s = result.stats
        fh.write(
            f"prepare_dataset: read {s['read']}, kept {s['kept']} (train {s['splits']['train']}, "
            f"val {s['splits']['val']}, test {s['splits']['test']}), rejected {s['rejected']} "
            f"{s['rejected_by_reason']} -> {out_dir}\n"
        )
