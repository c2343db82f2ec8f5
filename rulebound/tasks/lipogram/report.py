"""The lipogram report: the method x metric table as a figure, and the HTML section."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from rulebound.report.figures import cell_colour, plt, read_summary, save
from rulebound.report.html import Raw, concat, esc, figures, mark, read_csv, reward_readings_section, table

LIPOGRAM_SEED_PROMPTS = ["Explain gravity.", "What is a car?", "Describe a dog.", "Give me a short story.",
                         "How do you feel today?"]
# The lipogram table as a figure: (column, label, higher is better); None: annotated, not coloured.
LIPOGRAM_METRICS = [("e_free_rate", "e-free rate \u2191", True), ("lazy_rate", "lazy rate \u2193", False),
                    ("degenerate_rate", "degenerate \u2193", False), ("relevance", "relevance \u2191", True),
                    ("e_per_100_letters", "e per 100 letters", None), ("mean_words", "mean words", None)]


def plot_lipogram_eval(summary_csv: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """The method x metric table as a heatmap: rates coloured by how good they are, every cell annotated."""
    summary = read_summary(summary_csv, {"variant", "e_free_rate"}, "a lipogram summary")
    metrics = [m for m in LIPOGRAM_METRICS if m[0] in summary.columns]
    values = summary[[m[0] for m in metrics]].apply(pd.to_numeric, errors="coerce")
    goodness = np.full(values.shape, np.nan)
    for j, (column, _, higher) in enumerate(metrics):
        if higher is not None:
            goodness[:, j] = values[column].clip(0, 1) if higher else 1 - values[column].clip(0, 1)
    fig, ax = plt.subplots(figsize=(1.35 * len(metrics) + 3, 0.45 * len(summary) + 1.6))
    ax.imshow(np.ma.masked_invalid(goodness), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_facecolor("#eeeeee")  # annotated-only columns
    for (i, j), value in np.ndenumerate(values.to_numpy()):
        column = metrics[j][0]
        text = "\u2013" if pd.isna(value) else f"{value:.1f}" if metrics[j][2] is None else f"{value:.2f}"
        if column == "e_free_rate" and {"ci_low", "ci_high"} <= set(summary.columns) and pd.notna(value):
            text += f"\n[{summary['ci_low'].iat[i]:.2f}, {summary['ci_high'].iat[i]:.2f}]"
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=cell_colour(goodness[i, j], "black"))
    ax.set_xticks(range(len(metrics)), [m[1] for m in metrics], rotation=20, ha="left")
    ax.set_yticks(range(len(summary)), summary["variant"])
    ax.xaxis.tick_top()
    ax.set_title("Lipogram: method x metric (green is good)", pad=12)
    fig.tight_layout()
    save(fig, out_png)


def _lipogram_summary(summary: pd.DataFrame) -> str:
    def num(r, column, digits=2):
        return f"{r[column]:.{digits}f}" if column in r and pd.notna(r[column]) else None

    rows = [[r["variant"], int(r["n"]) if "n" in r else None,
             f"{num(r, 'e_free_rate')} [{num(r, 'ci_low')}, {num(r, 'ci_high')}]", num(r, "e_per_100_letters", 1),
             num(r, "mean_words", 1), num(r, "lazy_rate"), num(r, "degenerate_rate"), num(r, "relevance")]
            for _, r in summary.iterrows()]
    return table(["variant", "n", "e-free rate [95% Wilson]", "e per 100 letters", "mean words", "lazy rate",
                   "degenerate rate", "relevance"], rows, "summary")


def _lipogram_examples(evals: pd.DataFrame) -> str:
    """The seed's prompts (or, without them, the first five) x variant: each variant's answer."""
    present = list(evals["prompt"].drop_duplicates())
    prompts = [p for p in LIPOGRAM_SEED_PROMPTS if p in present] or present[:5]
    variants = list(evals["variant"].drop_duplicates())
    by_variant = {v: df.drop_duplicates("prompt").set_index("prompt") for v, df in evals.groupby("variant", sort=False)}

    def cell(variant, prompt):
        df = by_variant[variant]
        if prompt not in df.index:
            return None
        row = df.loc[prompt]
        sign = mark(row["e_free"]) if "e_free" in row else ""
        return Raw(f"{sign} {esc(row['response'])}")

    return table(["prompt", *variants], [[p, *(cell(v, p) for v in variants)] for p in prompts], "examples lipogram")


def html_section(entry: dict) -> list[str]:
    """The lipogram section: the method x metric table, figures, training readings, the seed's prompts."""
    body = []
    if entry.get("summary"):
        body += ["<h3>Method x metric</h3>", _lipogram_summary(read_csv(entry["summary"]))]
    body += figures(entry)
    body += reward_readings_section(entry.get("metrics") or {})
    evals = concat(list((entry.get("evals") or {}).values()))
    if {"variant", "prompt", "response"} <= set(evals.columns):
        body += ["<h3>The seed's prompts, as each variant answered (\u2713: no banned letter)</h3>",
                 _lipogram_examples(evals)]
    return body
