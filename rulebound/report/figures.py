"""Figures every task shares, and the readings of training curves (HTML: ``rulebound.report.html``).

ORPO runs: the seeds' W&B panels, each captioned with what a seed's curve did (the task gives its seed's
readings), and returned as readings with what ours did. GRPO and SFT runs: reward curves per run (total,
each component, completion length, KL) and SFT loss. The helpers (``save``, ``read_summary``,
``cell_colour``) are for the tasks' own evaluation figures.
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

# The seeds' W&B panels in their order: (title, metric columns). A panel is drawn when at least one of its
# columns holds a value and, where the task gives a seed's readings, the seed read that panel.
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


@dataclass(frozen=True)
class Reading:
    """One training panel: what the seed's curve did and what ours did."""

    panel: str
    seed: str
    ours: str

    def __str__(self) -> str:
        return f"{self.panel}: {self.seed}; ours: {self.ours}" if self.seed else f"{self.panel}: {self.ours}"


def save(fig, out_png: str | os.PathLike) -> None:
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


def fmt(value: float) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.2f}" if 0.01 <= abs(value) < 1000 else f"{value:.2g}"


def ends(values: pd.Series) -> tuple[float, float]:
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
        return f"peak {fmt(lr.max())} at step {lr.idxmax()}, {fmt(lr.iloc[0])} -> {fmt(lr.iloc[-1])}"
    if panel == "gradient norm":
        return f"median {fmt(curves[0].median())}, max {fmt(curves[0].max())} at step {curves[0].idxmax()}"
    parts = []
    for curve in curves:
        first, last = ends(curve)
        label = f"{curve.name} " if len(curves) > 1 else ""
        parts.append(f"{label}{fmt(first)} -> {fmt(last)}")
    if panel == "preference accuracy":
        acc = curves[0]
        below = acc.index[acc < 0.999]
        if acc.iloc[-1] >= 0.999:
            after = acc.index[acc.index > below[-1]] if len(below) else acc.index
            parts.append(f"1.0 from step {after[0]}")
        else:
            parts.append(f"max {fmt(acc.max())} at step {acc.idxmax()}")
    return ", ".join(parts)


def training_readings(metrics: pd.DataFrame, seed_readings: dict[str, str] | None = None
                      ) -> list[tuple[Reading, list[pd.Series]]]:
    """The ORPO panels this run can draw, each with its reading and its curves (by step).

    ``seed_readings`` (panel -> what the seed's curve did) limits the panels to those the seed read; without
    it every panel with data is drawn, with no seed reading.
    """
    out = []
    for title, columns in TRAINING_PANELS:
        curves = [c for c in (_series(metrics, col) for col in columns) if len(c)]
        if curves and (seed_readings is None or title in seed_readings):
            out.append((Reading(title, (seed_readings or {}).get(title, ""), _ours(title, curves)), curves))
    return out


def _caption(ax, title: str, caption: str, width: int = 52) -> None:
    """The panel's title in bold, the seed's reading under it in small italics."""
    lines = textwrap.wrap(caption, width) if caption else []
    ax.set_title("\n".join(lines), fontsize=7.5, style="italic", color="#444")
    ax.annotate(title, (0.5, 1.0), xycoords="axes fraction", xytext=(0, 6 + 10 * len(lines)),
                textcoords="offset points", ha="center", va="bottom", fontsize=10, fontweight="bold")


def plot_training_curves(metrics_csv: str | os.PathLike, out_png: str | os.PathLike, *,
                         seed_readings: dict[str, str] | None = None, title: str = "ORPO training") -> list[str]:
    """The seed's W&B panels against step, each captioned with the seed's reading; missing columns are skipped.

    Returns one line per panel drawn, "<panel>: <seed's reading>; ours: <what our curve did>".
    """
    metrics = pd.read_csv(metrics_csv)
    panels = training_readings(metrics, seed_readings)
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
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, out_png)
    return [str(reading) for reading, _ in panels]


def read_summary(path, needed: set[str], what: str) -> pd.DataFrame:
    summary = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = needed - set(summary.columns)
    if missing:
        raise DataError(f"{path} lacks columns {sorted(missing)}; is it {what}?")
    return summary


def cell_colour(value: float, missing: str = "#999") -> str:
    """Text that reads on RdYlGn: white on the dark ends, black in the light middle."""
    return missing if pd.isna(value) else "white" if value < 0.2 or value > 0.85 else "black"


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
        ours = "; ".join(f"{m} {fmt(ends(c)[0])} -> {fmt(ends(c)[1])}" for m, c in curves.items())
        readings.append(Reading(title, "", ours))
    return readings


def plot_reward_curves(metrics: dict[str, str | os.PathLike], out_png: str | os.PathLike, *,
                       title: str = "Training: reward per GRPO run, SFT loss") -> list[str]:
    """GRPO and SFT runs in one figure: rewards (total, per component), completion length, KL, SFT loss.

    ``metrics`` maps a run's label to its metrics CSV; returns one reading line per panel drawn.
    """
    runs = {label: pd.read_csv(p) for label, p in metrics.items()}
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
        log.warning("%s hold no reward or loss columns", ", ".join(map(str, metrics.values())) or "no metrics CSVs")
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, out_png)
    return [str(r) for r in reward_readings(runs)]


