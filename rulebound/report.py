"""The report's figures, and the readings of the training curves beside the seeds' (HTML: ``report_html``).

Politeness and truthy (ORPO): the seeds' W&B panels, each captioned with what the seed's curve did, and
returned as readings with what ours did. Politeness: a category x variant heatmap of the correct rate.
Truthy: preference accuracy per variant and the margin distributions. Lipogram: GRPO reward curves per
method (total, each component, completion length) and SFT loss, and the method x metric table as a figure.
"""

from __future__ import annotations

import logging
import math
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes; must precede pyplot
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from rulebound.errors import DataError
from rulebound.io import atomic_path

log = logging.getLogger(__name__)

# The seeds' W&B panels in their order: (title, metric columns). A panel is drawn when the task has a reading
# for it and at least one of its columns holds a value.
TRAINING_PANELS = [
    ("loss", ["loss", "nll_loss"]),
    ("preference accuracy", ["rewards/accuracies"]),
    ("reward margin", ["rewards/margins"]),
    ("rewards", ["rewards/chosen", "rewards/rejected"]),
    ("log-probabilities", ["logps/chosen", "logps/rejected"]),
    ("log-odds ratio", ["log_odds_ratio"]),
    ("learning rate", ["learning_rate"]),
    ("gradient norm", ["grad_norm"]),
]
# What each seed's curve did (seed 000 politeness, seed 003 truthy), one line per panel.
SEED_READINGS = {
    "politeness": {
        "loss": "loss and nll_loss fall from about 4.5 to about 1",
        "preference accuracy": ("rises from a noisy 0.4-0.8 to 1.0 (by about step 1000 of ~1600): "
                                "the model tells please from no please"),
        "reward margin": "about 0.4 and growing: chosen pulled away from rejected",
        "log-probabilities": "chosen climbs toward -1, rejected is pushed down to -4..-5: ORPO's push and pull",
        "learning rate": "linear warm-up, then decay",
        "gradient norm": "stays small (below 5)",
    },
    "truthy": {  # seed 003 read three of its panels; the others say what to expect
        "loss": "falls with the steps",
        "preference accuracy": "not read in seed 003; should rise: the truthful answer preferred more often",
        "reward margin": "chosen pulls away from rejected",
        "rewards": "rewards/chosen and rewards/rejected, the seed's logged pair: chosen ends above rejected",
        "log-probabilities": "not read in seed 003; chosen should end above rejected",
        "log-odds ratio": "fluctuates, but rises overall",
        "learning rate": "warm-up, then cosine decay (the seed's schedule)",
        "gradient norm": "not read in seed 003; should stay bounded",
    },
}
HEATMAP_AGGREGATES = ["with please", "without please", "all"]
# Answered categories, then those refused under the lexical policy, then the ones that try to get around it.
CATEGORY_ORDER = ["exact_please", "please", "semantic_please", "pls_plz", "misspelling", "other_language",
                  "implied", "no_please", "trap", "jailbreak", "multi_turn"]
# The lipogram table as a figure: (column, label, higher is better); None: annotated, not coloured.
LIPOGRAM_METRICS = [("e_free_rate", "e-free rate \u2191", True), ("lazy_rate", "lazy rate \u2193", False),
                    ("degenerate_rate", "degenerate \u2193", False), ("relevance", "relevance \u2191", True),
                    ("e_per_100_letters", "e per 100 letters", None), ("mean_words", "mean words", None)]


@dataclass(frozen=True)
class Reading:
    """One training panel: what the seed's curve did and what ours did."""

    panel: str
    seed: str
    ours: str

    def __str__(self) -> str:
        return f"{self.panel}: {self.seed}; ours: {self.ours}" if self.seed else f"{self.panel}: {self.ours}"


def _save(fig, out_png: str | os.PathLike) -> None:
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def _grid(n_panels: int, width: float = 4.2, height: float = 3.2):
    ncols = 3 if n_panels > 4 else max(1, min(2, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n_panels:]:
        ax.set_axis_off()
    return fig, list(axes.flat)


def _fmt(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.2f}" if 0.01 <= abs(value) < 1000 else f"{value:.2g}"


def _ends(values: pd.Series) -> tuple[float, float]:
    """First and last value of a curve, each the mean of its first/last 5% of logged steps (one to ten)."""
    k = min(10, max(1, round(len(values) * 0.05)))
    return float(values.iloc[:k].mean()), float(values.iloc[-k:].mean())


def _series(metrics: pd.DataFrame, column: str) -> pd.Series:
    """A metric's logged values indexed by step (row number + 1 without a step column)."""
    if column not in metrics.columns:
        return pd.Series(dtype=float, name=column)
    steps = metrics["step"] if "step" in metrics.columns else pd.Series(range(1, len(metrics) + 1), metrics.index)
    values = pd.to_numeric(metrics[column], errors="coerce")
    mask = values.notna()
    index = steps[mask].to_numpy()
    if len(index) and np.all(np.mod(index, 1) == 0):
        index = index.astype(int)  # "step 37", not "step 37.0"
    return pd.Series(values[mask].astype(float).to_numpy(), index=index, name=column)


def _ours(panel: str, curves: list[pd.Series]) -> str:
    """What our curve did, in the terms of the seed's reading."""
    if panel == "learning rate":
        lr = curves[0]
        return f"peak {_fmt(lr.max())} at step {lr.idxmax()}, {_fmt(lr.iloc[0])} -> {_fmt(lr.iloc[-1])}"
    if panel == "gradient norm":
        return f"median {_fmt(curves[0].median())}, max {_fmt(curves[0].max())} at step {curves[0].idxmax()}"
    parts = []
    for curve in curves:
        first, last = _ends(curve)
        label = f"{curve.name} " if len(curves) > 1 else ""
        parts.append(f"{label}{_fmt(first)} -> {_fmt(last)}")
    if panel == "preference accuracy":
        acc = curves[0]
        below = acc.index[acc < 0.999]
        if acc.iloc[-1] >= 0.999:
            after = acc.index[acc.index > below[-1]] if len(below) else acc.index
            parts.append(f"1.0 from step {after[0]}")
        else:
            parts.append(f"max {_fmt(acc.max())} at step {acc.idxmax()}")
    return ", ".join(parts)


def training_readings(metrics: pd.DataFrame, task: str = "politeness") -> list[tuple[Reading, list[pd.Series]]]:
    """The ORPO panels this run can draw, each with its reading and its curves (by step)."""
    seed = SEED_READINGS.get(task, SEED_READINGS["politeness"])
    out = []
    for title, columns in TRAINING_PANELS:
        curves = [c for c in (_series(metrics, col) for col in columns) if len(c)]
        if title in seed and curves:
            out.append((Reading(title, seed[title], _ours(title, curves)), curves))
    return out


def _caption(ax, title: str, caption: str, width: int = 52) -> None:
    """The panel's title in bold, the seed's reading under it in small italics."""
    lines = textwrap.wrap(caption, width) if caption else []
    ax.set_title("\n".join(lines), fontsize=7.5, style="italic", color="#444")
    ax.annotate(title, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 6 + 10 * len(lines)),
                textcoords="offset points", ha="center", va="bottom", fontsize=10, fontweight="bold")


def plot_training_curves(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, *, task: str = "politeness",
                         title: str | None = None) -> list[str]:
    """The seed's W&B panels against step, each captioned with the seed's reading; missing columns are skipped.

    Returns one line per panel drawn, "<panel>: <seed's reading>; ours: <what our curve did>".
    """
    metrics = pd.read_csv(metrics_csv)
    panels = training_readings(metrics, task)
    fig, axes = _grid(len(panels), height=3.5)
    for ax, (reading, curves) in zip(axes, panels):
        for curve in curves:
            ax.plot(curve.index, curve.to_numpy(), marker="." if len(curve) < 30 else None, label=curve.name)
        _caption(ax, reading.panel, reading.seed)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize=8)
    if not panels:
        axes[0].set_axis_on()
        axes[0].text(0.5, 0.5, f"no training metrics in {Path(metrics_csv).name}", ha="center", va="center")
        log.warning("%s has none of the plotted metric columns", metrics_csv)
    fig.suptitle(title or f"ORPO training ({task})")
    fig.tight_layout()
    _save(fig, out_png)
    return [str(reading) for reading, _ in panels]


def _read_summary(path, needed: set[str], what: str) -> pd.DataFrame:
    summary = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = needed - set(summary.columns)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}; is it {what}?")
    return summary


def _cell_colour(value: float, missing: str = "#999") -> str:
    """Text that reads on RdYlGn: white on the dark ends, black in the light middle."""
    return missing if pd.isna(value) else "white" if value < 0.2 or value > 0.85 else "black"


def plot_eval_heatmap(summary_csv: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """Correct rate per category (rows, then the aggregates) and variant (columns, in the summary's order)."""
    summary = _read_summary(summary_csv, {"variant", "group", "n", "rate"}, "a politeness summary")
    variants = list(summary["variant"].drop_duplicates())
    present = list(summary["group"].drop_duplicates())
    categories = [g for g in CATEGORY_ORDER if g in present]
    categories += [g for g in present if g not in categories and g not in HEATMAP_AGGREGATES]
    groups = categories + [g for g in HEATMAP_AGGREGATES if g in present]
    table = summary.set_index(["group", "variant"])
    rate = table["rate"].unstack("variant").reindex(index=groups, columns=variants).astype(float)
    n = table["n"].unstack("variant").reindex(index=groups, columns=variants)
    fig, ax = plt.subplots(figsize=(1.15 * len(variants) + 3.2, 0.5 * len(groups) + 1.6))
    image = ax.imshow(rate.to_numpy(), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(rate.to_numpy()):
        count = n.iat[i, j]
        text = "\u2013" if pd.isna(value) else f"{value:.2f}\nn={int(count)}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=_cell_colour(value))
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_yticks(range(len(groups)), groups)
    if len(categories) < len(groups):
        ax.axhline(len(categories) - 0.5, color="black", linewidth=1.5)  # categories above, aggregates below
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="correct rate")
    ax.set_title("Rule followed, per category and variant")
    fig.tight_layout()
    _save(fig, out_png)


def _margins(eval_csvs, variants: list[str]) -> dict[str, np.ndarray]:
    frames = [pd.read_csv(p, usecols=lambda c: c in ("variant", "margin")) for p in eval_csvs or []]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "margin"])
    return {v: scores.loc[scores["variant"] == v, "margin"].dropna().astype(float).to_numpy() for v in variants}


def _quantile_boxes(summary: pd.DataFrame) -> list[dict] | None:
    """Box statistics from the summary's margin quantiles, when the eval CSVs are not at hand."""
    needed = ["margin_q10", "margin_q25", "margin_median", "margin_q75", "margin_q90"]
    if not set(needed) <= set(summary.columns):
        return None
    return [{"whislo": r.margin_q10, "q1": r.margin_q25, "med": r.margin_median, "q3": r.margin_q75,
             "whishi": r.margin_q90, "fliers": [], "label": r.variant} for r in summary.itertuples()]


def plot_preference_eval(summary_csv: str | os.PathLike, eval_csvs, out_png: str | os.PathLike) -> None:
    """Held-out preference accuracy per variant (95% Wilson) beside each variant's margin distribution."""
    summary = _read_summary(summary_csv, {"variant", "accuracy", "ci_low", "ci_high"}, "a truthy summary")
    if "group" in summary.columns:
        summary = summary[summary["group"].astype(str) == "all"]
    variants = list(summary["variant"])
    fig, (acc_ax, margin_ax) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(variants) + 4), 4.0))
    err = [(summary["accuracy"] - summary["ci_low"]).clip(lower=0),
           (summary["ci_high"] - summary["accuracy"]).clip(lower=0)]
    acc_ax.bar(range(len(variants)), summary["accuracy"], yerr=err, capsize=4, color="#4c72b0")
    base = summary.loc[summary["variant"] == "base", "accuracy"]
    if len(base):
        acc_ax.axhline(base.iloc[0], linestyle="--", color="#c44e52", label=f"base {base.iloc[0]:.2f}")
        acc_ax.legend(fontsize=8, loc="lower right")
    acc_ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    acc_ax.set(ylim=(0, 1.05), ylabel="preference accuracy (95% Wilson)", title="Truthful answer preferred")
    acc_ax.grid(axis="y", alpha=0.3)
    margins = _margins(eval_csvs, variants)
    if any(len(m) for m in margins.values()):
        margin_ax.boxplot([margins[v] for v in variants], showmeans=True)
        margin_ax.set_xticks(range(1, len(variants) + 1), variants, rotation=30, ha="right")
    elif (boxes := _quantile_boxes(summary)) is not None:
        margin_ax.bxp(boxes, showfliers=False)
        margin_ax.tick_params(axis="x", rotation=30)
    margin_ax.axhline(0, color="black", linewidth=0.8)
    margin_ax.set(ylabel="margin: mean logp(chosen) - logp(rejected)", title="Margin per held-out pair")
    margin_ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, out_png)


def method_of(metrics_csv: str | os.PathLike) -> str:
    """The lipogram method a run's metrics belong to: results/<experiment>/<method>/train/metrics.csv."""
    return Path(metrics_csv).parent.parent.name


def _completion_column(metrics: pd.DataFrame) -> str | None:
    names = [c for c in metrics.columns if c.startswith("completions/")]
    preferred = [c for c in names if c.endswith("mean_length")] or [c for c in names if "mean" in c]
    return (preferred or names or [None])[0]


def reward_panels(runs: dict[str, pd.DataFrame]) -> list[tuple[str, dict[str, pd.Series]]]:
    """(title, {method: curve}) for each lipogram panel with data: total reward, each component, length, KL, loss."""
    grpo = {m: df for m, df in runs.items() if "reward" in df.columns}
    sft = {m: df for m, df in runs.items() if m not in grpo and "loss" in df.columns}
    components = sorted({c for df in grpo.values() for c in df.columns
                         if c.startswith("rewards/") and c.endswith("/mean")})
    specs = [("total reward", grpo, lambda df: "reward")]
    specs += [(f"reward: {c.split('/')[1]}", grpo, lambda df, c=c: c) for c in components]
    specs += [("completion length", grpo, _completion_column), ("KL to the reference", grpo, lambda df: "kl"),
              ("SFT loss", sft, lambda df: "loss")]
    panels = []
    for title, group, column in specs:
        curves = {m: _series(df, column(df)) for m, df in group.items() if column(df)}
        curves = {m: c for m, c in curves.items() if len(c)}
        if curves:
            panels.append((title, curves))
    return panels


def reward_readings(runs: dict[str, pd.DataFrame]) -> list[Reading]:
    """Per lipogram panel, what each method's curve did (first -> last)."""
    readings = []
    for title, curves in reward_panels(runs):
        ours = "; ".join(f"{m} {_fmt(_ends(c)[0])} -> {_fmt(_ends(c)[1])}" for m, c in curves.items())
        readings.append(Reading(title, "", ours))
    return readings


def plot_reward_curves(metrics_csvs, out_png: str | os.PathLike) -> list[str]:
    """Lipogram training in one figure: GRPO rewards (total, per component), completion length, SFT loss.

    The method of each CSV comes from its path; returns one reading line per panel drawn.
    """
    runs = {method_of(p): pd.read_csv(p) for p in metrics_csvs}
    panels = reward_panels(runs)
    colours = {m: f"C{i}" for i, m in enumerate(runs)}  # one colour per method across panels
    fig, axes = _grid(len(panels))
    for ax, (title, curves) in zip(axes, panels):
        for method, curve in curves.items():
            ax.plot(curve.index, curve.to_numpy(), color=colours[method], label=method,
                    marker="." if len(curve) < 30 else None)
        ax.set(title=title, xlabel="step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if not panels:
        axes[0].set_axis_on()
        axes[0].text(0.5, 0.5, "no reward or loss columns in the training metrics", ha="center", va="center")
        log.warning("%s hold no reward or loss columns", ", ".join(map(str, metrics_csvs)) or "no metrics CSVs")
    fig.suptitle("Lipogram training: reward per GRPO method, SFT loss")
    fig.tight_layout()
    _save(fig, out_png)
    return [str(r) for r in reward_readings(runs)]


def plot_lipogram_eval(summary_csv: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """The method x metric table as a heatmap: rates coloured by how good they are, every cell annotated."""
    summary = _read_summary(summary_csv, {"variant", "e_free_rate"}, "a lipogram summary")
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
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=_cell_colour(goodness[i, j], "black"))
    ax.set_xticks(range(len(metrics)), [m[1] for m in metrics], rotation=20, ha="left")
    ax.set_yticks(range(len(summary)), summary["variant"])
    ax.xaxis.tick_top()
    ax.set_title("Lipogram: method x metric (green is good)", pad=12)
    fig.tight_layout()
    _save(fig, out_png)
