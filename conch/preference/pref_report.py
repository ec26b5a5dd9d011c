"""The preference report: one self-contained HTML page, every model in its own column."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# metric -> its axis label; a metric some model lacks is left out of the chart
CHART_METRICS = {
    "preference_accuracy": "preference accuracy (%)",
    "preference_accuracy_vs_sft_answers": "pref. accuracy vs SFT's answers (%)",
    "persona_name_recall": "persona name recall (%)",
    "rouge_l": "ROUGE-L",
}


def chart(metrics: dict, out: str | Path) -> None:
    models = list(metrics["models"])
    shown = [
        (k, label)
        for k, label in CHART_METRICS.items()
        if all(metrics["models"][m].get(k) is not None for m in models)
    ]
    rewards = all("mean_reward_of_answers" in metrics["models"][m] for m in models)
    fig, axes = plt.subplots(1, 2 if rewards else 1, figsize=(10 if rewards else 7, 3.8), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        xs = [x + (i - (len(models) - 1) / 2) * width for x in range(len(shown))]
        ax.bar(xs, [metrics["models"][model][k] for k, _ in shown], width=width, label=model)
    ax.set_xticks(range(len(shown)), [label for _, label in shown], fontsize=8)
    ax.set_title(f"held-out: {metrics['n_pairs']} pairs, {metrics['n_sft']} SFT records")
    ax.legend()
    if rewards:
        ax_r = axes[0][1]
        ax_r.bar(
            models,
            [metrics["models"][m]["mean_reward_of_answers"] for m in models],
            color=[f"C{i}" for i in range(len(models))],
        )
        ax_r.set_title("reward model: mean score of greedy answers")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def html_report(title: str, metrics: dict, samples: list[dict], images: list[str | Path]) -> str:
    models = list(metrics["models"])
    keys = list(dict.fromkeys(k for m in models for k in metrics["models"][m]))
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(f"<td>{_fmt(metrics['models'][m].get(k))}</td>" for m in models)
        + "</tr>"
        for k in keys
    )
    reward = metrics.get("reward_model")
    reward_html = (
        "<h2>Reward model</h2><table>"
        + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in reward.items())
        + "</table>"
        if reward
        else ""
    )
    cols = ["prompt", "chosen", "rejected", *models]
    sample_rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(s[c]))}</td>" for c in cols) + "</tr>" for s in samples
    )
    images_html = "".join(
        f'<img alt="{html.escape(Path(p).name)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(p).read_bytes()).decode()}">'
        for p in images
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}
th{{background:#f3f3f3}}img{{max-width:100%}}td{{overflow-wrap:anywhere}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{metrics["n_pairs"]} held-out preference pairs and {metrics["n_sft"]} SFT test records; greedy decoding, at
most {metrics["max_new_tokens"]} new tokens. preference_accuracy: share of pairs where the model's
log-probability of chosen exceeds that of rejected. preference_accuracy_vs_sft_answers: the same on the
{metrics.get("n_pairs_vs_sft_answers", 0)} pairs whose rejected side is the SFT model's own greedy answer (the
sft column below), where the SFT model starts near 0 % and a gain shows what alignment changed. The aligned
models trained on {html.escape(str(metrics.get("trained_on_pairs", "given")))} pairs (preference.pairs).</p>
<h2>Metrics</h2>
<table><tr><th>metric</th>{head}</tr>{rows}</table>
{reward_html}
<h2>Charts</h2>
{images_html}
<h2>Answers to held-out pair prompts</h2>
<table><tr>{"".join(f"<th>{html.escape(c)}</th>" for c in cols)}</tr>{sample_rows}</table>
</body></html>
"""
