"""The eval report: one self-contained HTML page (images inlined) a person can open from anywhere."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHART_METRICS = [
    ("rouge_l", "ROUGE-L"),
    ("bleu_4", "BLEU-4"),
    ("persona_name_recall", "persona name"),
    ("retention", "retention"),
]


def comparison_chart(metrics: dict, out: str | Path) -> None:
    """Base vs tuned: similarity metrics as bars, perplexity on its own (log) axis."""
    fig, (ax, ax_ppl) = plt.subplots(1, 2, figsize=(9, 3.5), gridspec_kw={"width_ratios": [3, 1]})
    names = [(key, label) for key, label in CHART_METRICS if metrics["tuned"].get(key) is not None]
    xs = range(len(names))
    for offset, model in ((-0.2, "base"), (0.2, "tuned")):
        ax.bar([x + offset for x in xs], [metrics[model][k] for k, _ in names], width=0.4, label=model)
    ax.set_xticks(list(xs), [label for _, label in names])
    ax.set_ylabel("score (%)")
    ax.set_title("held-out test split")
    ax.legend()
    ax_ppl.bar(
        ["base", "tuned"], [metrics["base"]["perplexity"], metrics["tuned"]["perplexity"]], color=["C0", "C1"]
    )
    ax_ppl.set_yscale("log")
    ax_ppl.set_title("perplexity (lower is better)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _img(path: str | Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(Path(path).name)}" src="data:image/png;base64,{data}">'


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def html_report(title: str, metrics: dict, samples: list[dict], images: list[str | Path]) -> str:
    keys = [k for k in metrics["tuned"] if k in metrics["base"]]
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{_fmt(metrics['base'][k])}</td><td>{_fmt(metrics['tuned'][k])}</td></tr>"
        for k in keys
    )
    sample_rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(s[c]))}</td>" for c in ("prompt", "reference", "base", "tuned"))
        + "</tr>"
        for s in samples
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
th{{background:#f3f3f3}}img{{max-width:100%}}
.samples{{table-layout:fixed;width:100%}}.samples td{{overflow-wrap:anywhere}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{metrics["n_test"]} held-out test records; greedy decoding, at most {metrics["max_new_tokens"]} new tokens.</p>
<h2>Metrics</h2>
<table><tr><th>metric</th><th>base</th><th>tuned</th></tr>{rows}</table>
<h2>Charts</h2>
{"".join(_img(p) for p in images)}
<h2>Sample generations</h2>
<table class="samples"><tr><th>prompt</th><th>reference</th><th>base</th><th>tuned</th></tr>{sample_rows}</table>
</body></html>
"""
