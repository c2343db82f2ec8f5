"""Figures (training curves, correct rate per variant) and one self-contained HTML report."""

from __future__ import annotations

import base64
import html
import logging
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from rulebound.errors import DataError  # noqa: E402
from rulebound.io import atomic_path, write_text  # noqa: E402

log = logging.getLogger(__name__)

# (title, columns): a panel is drawn when at least one of its columns is in the metrics.
TRAINING_PANELS = [
    ("loss", ["loss", "nll_loss"]),
    ("preference accuracy", ["rewards/accuracies"]),
    ("reward margin", ["rewards/margins"]),
    ("log-probabilities", ["logps/chosen", "logps/rejected"]),
    ("learning rate", ["learning_rate"]),
    ("gradient norm", ["grad_norm"]),
]
EVAL_GROUPS = ["with please", "without please", "trap"]
SUMMARY_GROUP_ORDER = ["please", "no_please", "trap", "with please", "without please", "all"]
LAST_METRICS = ["step", "epoch", "loss", "nll_loss", "log_odds_ratio", "rewards/accuracies", "rewards/margins",
                "logps/chosen", "logps/rejected", "learning_rate", "grad_norm"]


def _save(fig, out_png: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_training_curves(metrics_csv: str | os.PathLike, out_png: str | os.PathLike) -> list[str]:
    """A grid of training panels against step; panels whose columns are missing are skipped.

    Returns the titles of the panels drawn. With no usable column at all the figure says so.
    """
    metrics = pd.read_csv(metrics_csv)
    x = metrics["step"] if "step" in metrics else pd.Series(range(1, len(metrics) + 1), name="step")
    present = [c for c in metrics.columns if metrics[c].notna().any()]
    panels = [(title, [c for c in cols if c in present]) for title, cols in TRAINING_PANELS]
    panels = [(title, cols) for title, cols in panels if cols]
    ncols = 3 if len(panels) > 4 else max(1, min(2, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (title, cols) in zip(axes.flat, panels):
        for col in cols:
            mask = metrics[col].notna()
            ax.plot(x[mask], metrics.loc[mask, col], marker="." if mask.sum() < 30 else None, label=col)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    if not panels:
        axes.flat[0].text(0.5, 0.5, f"no training metrics in {Path(metrics_csv).name}", ha="center", va="center")
        log.warning("%s has none of the plotted metric columns", metrics_csv)
    fig.suptitle("ORPO training")
    fig.tight_layout()
    _save(fig, out_png)
    return [title for title, _ in panels]


def plot_eval(summary_csv: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """Correct rate per variant, with and without please (and traps), with 95% Wilson intervals."""
    summary = pd.read_csv(summary_csv)
    missing = {"variant", "group", "rate", "ci_low", "ci_high"} - set(summary.columns)
    if missing:
        raise DataError(f"{summary_csv} lacks columns {sorted(missing)}; is it an eval summary?")
    variants = list(summary["variant"].drop_duplicates())
    groups = [g for g in EVAL_GROUPS if g in set(summary["group"])]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(variants) + 2), 3.8))
    width = 0.8 / max(1, len(groups))
    for j, group in enumerate(groups):
        rows = summary[summary["group"] == group].set_index("variant").reindex(variants)
        xs = [i + (j - (len(groups) - 1) / 2) * width for i in range(len(variants))]
        err = [(rows["rate"] - rows["ci_low"]).clip(lower=0).fillna(0),
               (rows["ci_high"] - rows["rate"]).clip(lower=0).fillna(0)]
        bars = ax.bar(xs, rows["rate"].fillna(0), width, yerr=err, capsize=3, label=group)
        for bar, n in zip(bars, rows.get("n", pd.Series(index=rows.index, dtype=float))):
            if pd.notna(n):
                ax.annotate(f"n={int(n)}", (bar.get_x() + bar.get_width() / 2, 0.02), ha="center", fontsize=7,
                            rotation=90, color="white")
    ax.set_xticks(range(len(variants)), variants)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("correct rate (95% Wilson)")
    ax.set_title("Rule followed, per variant")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=len(groups), frameon=False)
    fig.tight_layout()
    _save(fig, out_png)


# --- HTML -----------------------------------------------------------------------------------

def group_report_files(files: list[str | os.PathLike]) -> dict[str, dict]:
    """Sort a flat list of ``results/{experiment}/<stage>/<file>`` paths into one entry per experiment.

    Each entry has ``summary`` (path or None), ``metrics`` (path or None), ``figures`` and ``evals`` (lists).
    """
    experiments: dict[str, dict] = {}
    for f in map(Path, files):
        exp = f.parent.parent.name
        entry = experiments.setdefault(exp, {"summary": None, "metrics": None, "figures": [], "evals": []})
        if f.name == "summary.csv":
            entry["summary"] = f
        elif f.name == "metrics.csv":
            entry["metrics"] = f
        elif f.suffix == ".png":
            entry["figures"].append(f)
        elif f.suffix == ".csv" and f.parent.name == "eval":
            entry["evals"].append(f)
        else:
            log.warning("report: ignoring %s (not a summary, metrics, eval CSV or PNG)", f)
    return experiments


def _img(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(png.stem.replace('_', ' '))}</figcaption></figure>"


def _summary_table(summary: pd.DataFrame) -> str:
    cell = summary.apply(lambda r: f"{r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] n={int(r['n'])}"
                         if pd.notna(r["rate"]) else "–", axis=1)
    table = summary.assign(cell=cell).pivot(index="variant", columns="group", values="cell")
    known = [g for g in SUMMARY_GROUP_ORDER if g in table.columns]
    order = known + sorted(set(table.columns) - set(known))
    table = table.reindex(index=list(summary["variant"].drop_duplicates()), columns=order)
    return table.to_html(classes="summary", na_rep="–", escape=True)


def _examples(eval_csvs: list[Path], per_cell: int) -> str:
    parts = []
    for path in eval_csvs:
        df = pd.read_csv(path, keep_default_na=False, na_values=[])
        if df.empty:
            continue
        rank = {c: i for i, c in enumerate(SUMMARY_GROUP_ORDER)}
        sample = df.groupby("category", sort=False).head(per_cell)
        sample = sample.sort_values("category", key=lambda s: s.map(lambda c: rank.get(c, len(rank))), kind="stable")
        parts.append(f"<h4>{html.escape(str(df['variant'].iloc[0]))}</h4>")
        cols = [c for c in ("category", "user", "response", "correct") if c in sample.columns]
        parts.append(sample[cols].to_html(index=False, classes="examples", escape=True))
    return "\n".join(parts)


def _last_metrics(metrics_csv: Path) -> str:
    metrics = pd.read_csv(metrics_csv)
    if metrics.empty:
        return "<p>No training steps were logged.</p>"
    last = metrics.iloc[-1]
    cols = [c for c in LAST_METRICS if c in metrics.columns and pd.notna(last[c])]
    rows = "".join(f"<tr><th>{html.escape(c)}</th><td>{last[c]:.4g}</td></tr>" for c in cols)
    return f'<table class="metrics">{rows}</table>'


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}
table.examples td{max-width:480px;white-space:pre-wrap}"""


def render_html(experiments: dict[str, dict], out_html: str | os.PathLike, *, examples_per_cell: int = 2) -> None:
    """One self-contained page: per experiment its figures (inline PNG), summary, examples and last metrics.

    ``experiments`` maps a name to ``{"summary", "metrics", "figures", "evals"}`` (see ``group_report_files``);
    missing entries are left out of the page.
    """
    body = ["<h1>rulebound report</h1>"]
    for name, entry in sorted(experiments.items()):
        body.append(f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>')
        if entry.get("summary"):
            body += ["<h3>Correct rate (95% Wilson interval)</h3>", _summary_table(pd.read_csv(entry["summary"]))]
        body += [_img(Path(p)) for p in entry.get("figures", [])]
        if entry.get("metrics"):
            body += ["<h3>Last training step</h3>", _last_metrics(Path(entry["metrics"]))]
        if entry.get("evals"):
            body += [f"<h3>Example responses ({examples_per_cell} per variant and category)</h3>",
                     _examples([Path(p) for p in entry["evals"]], examples_per_cell)]
        body.append("</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>rulebound report</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_text(page, out_html)
