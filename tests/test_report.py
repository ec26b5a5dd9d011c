"""`snakemake --report` on the grid run: one self-contained page with every experiment in it."""

from __future__ import annotations

import re

import pytest
from conftest import GRID, snakemake

from conch.workflow.experiments import expand_grid

pytestmark = pytest.mark.slow


def test_report_is_one_page_with_every_experiment(grid_run, tmp_path):
    page_path = tmp_path / "report.html"
    snakemake(grid_run, "--report", str(page_path))
    page = page_path.read_text(encoding="utf-8")

    for name in expand_grid(GRID):
        # Loss plot, eval chart, samples and manifest of each experiment are labelled with its name.
        assert page.count(name) >= 4, name
    for category in ("1. Comparison", "2. Training", "3. Evaluation", "4. Provenance"):
        assert f'"{category}"' in page, category
    for output in ("results/compare/experiments.csv", "results/compare/loss_curves.png"):
        assert output in page, output
    assert "Every experiment in one row" in page  # a caption from report/, rendered
    assert "rulegraph_spec" in page and "runtimes_spec" in page  # the DAG and the run statistics
    # Self-contained: scripts and results are inlined, nothing is fetched when the page opens.
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=\"https?:", page)
