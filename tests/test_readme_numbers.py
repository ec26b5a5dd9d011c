"""The README's result table is what `make run` gives now: the default config, run from nothing, up to the eval
metrics, compared with the table at the precision it prints (it went stale once: README 1.7 / 61.6 / 100 %
where every committed state gives 1.58 / 63.1 / 96.6 %)."""

from __future__ import annotations

import json
import re

import pytest
from conftest import REPO, default_config, make_workdir, snakemake

pytestmark = pytest.mark.slow

# README row label -> the key in results/eval/default/metrics.json (for both the base and the tuned column).
ROWS = {
    "perplexity": "perplexity",
    "ROUGE-L": "rouge_l",
    "BLEU-4": "bleu_4",
    "persona name used where the reference does (%)": "persona_name_recall",
}


def readme_table() -> tuple[int, dict[str, tuple[str, str]]]:
    """(test records, {metric key: (base, tuned)}) as printed in the README, e.g. ('1267', '1.58')."""
    records, rows = None, {}
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header := re.fullmatch(r"metric \(test split, (\d+) records\)", cells[0]):
            records = int(header.group(1))
        elif len(cells) == 3 and cells[0] in ROWS:
            rows[ROWS[cells[0]]] = (cells[1], cells[2])
    assert records and set(rows) == set(ROWS.values()), (
        f"README result table: {records} records, {sorted(rows)}"
    )
    return records, rows


def as_printed(value: float, printed: str) -> str:
    """`value` with as many decimals as the README prints it."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return f"{value:.{decimals}f}"


def test_the_readme_result_table_is_what_the_default_config_gives(tmp_path):
    workdir = make_workdir(tmp_path / "default", default_config())
    snakemake(workdir, "results/eval/default/metrics.json", timeout=2400)
    metrics = json.loads((workdir / "results/eval/default/metrics.json").read_text())
    records, printed = readme_table()
    got = {
        key: (as_printed(metrics["base"][key], base), as_printed(metrics["tuned"][key], tuned))
        for key, (base, tuned) in printed.items()
    }
    assert (metrics["n_test"], got) == (records, printed), "refresh the README's table from this run"
