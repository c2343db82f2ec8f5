"""Our figures beside the seeds' published ones (results/reproduction.md and .csv).

Each row is one published figure, ours from the same stage of our run, and whether the two can be
compared: only a run on the seed's model and data is a reproduction; the embedded default shows the
same mechanism at laptop scale, and its row says so instead of pretending to match numbers. The rows
come from each experiment's task (``Task.reproduction_rows``); the helpers here read curves for them.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rulebound.io import write_csv, write_text

log = logging.getLogger(__name__)

COLUMNS = ["seed", "experiment", "figure", "published", "ours", "comparable", "setting"]


@dataclass(frozen=True)
class SeedRun:
    """A published run: what makes a run of ours the same experiment. ``models`` is a regex over our model
    source: the seed's checkpoint, or the same weights under another name."""

    seed: str
    model: str
    data: str
    models: str

    def comparable(self, model_source: str, same_data: bool) -> str:
        if re.fullmatch(self.models, str(model_source)) is not None and same_data:
            return "yes"
        return f"no: our run is not the seed's ({self.model}, {self.data}); same mechanism at another scale"


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def tail_mean(metrics: pd.DataFrame, column: str, share: float = 0.1) -> float | None:
    """Mean of a metric over the last ``share`` of logged steps: the end of a curve, without one step's noise."""
    if column not in metrics.columns or metrics[column].dropna().empty:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[-max(1, int(len(values) * share)):].mean())


def head_mean(metrics: pd.DataFrame, column: str, share: float = 0.1) -> float | None:
    if column not in metrics.columns or metrics[column].dropna().empty:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[: max(1, int(len(values) * share))].mean())


def first_step_at(metrics: pd.DataFrame, column: str, level: float, window: int = 10) -> int | None:
    """First step where the running mean over ``window`` steps reaches ``level``."""
    if column not in metrics.columns:
        return None
    running = metrics[column].rolling(window, min_periods=1).mean()
    hit = metrics.loc[running >= level, "step"] if "step" in metrics.columns else running[running >= level].index
    return int(hit.iloc[0]) if len(hit) else None


def rows_for(seed_run: SeedRun, name: str, figures: list[tuple[str, str, str]], *, comparable: str,
             setting: str) -> list[dict]:
    """Table rows from (figure, published, ours) triples of one experiment."""
    return [dict(seed=seed_run.seed, experiment=name, figure=f, published=p, ours=o, comparable=comparable,
                 setting=setting) for f, p, o in figures]


def comparability(task: str, model_source: str, exp: dict) -> tuple[str, str] | None:
    """("yes"/"no: why", our setting) of an experiment against its task's seed (None for a task without one)."""
    from rulebound.tasks import registry

    return registry.get(task).seed_comparison(exp, model_source)


def build_reproduction(settings: dict, root: str | os.PathLike = ".") -> pd.DataFrame:
    """One table over every experiment of the config; ``settings`` as the reproduce rule passes them
    ({experiment: {"task", "model_source", "config"}}). Tasks that reproduce no seed add no rows."""
    from rulebound.tasks import registry

    rows = []
    for name, exp in settings.items():
        task = registry.get(exp["task"])
        rows += task.reproduction_rows(name, exp["config"], model_source=exp["model_source"], root=Path(root))
    return pd.DataFrame(rows, columns=COLUMNS)


def render_markdown(table: pd.DataFrame) -> str:
    parts = ["# Reproduction: our figures beside the seeds'\n",
             "Each row sets a figure the seed published beside ours from the same stage. `comparable` says whether "
             "our run is the seed's run; where it is not (the embedded laptop default), the row shows the same "
             "mechanism at another scale and the numbers are not expected to match.\n",
             "To reproduce the seeds themselves: `snakemake --profile profiles/slurm-a100 --configfile "
             "presets/<preset>.yaml reproduce` (see README).\n"]
    for (seed, name), group in table.groupby(["seed", "experiment"], sort=True):
        first = group.iloc[0]
        parts.append(f"\n## Seed {seed}: {name}\n\nOur setting: {first['setting']}  \nComparable: {first['comparable']}\n")
        parts.append("| figure | published | ours | comparable |\n| --- | --- | --- | --- |")
        parts += [f"| {r.figure} | {r.published} | {str(r.ours).replace('|', '/')} | "
                  f"{'yes' if r.comparable == 'yes' else 'no (not the seed run)'} |" for r in group.itertuples()]
    return "\n".join(parts) + "\n"


def write_reproduction(settings: dict, out_md, out_csv, root: str | os.PathLike = ".") -> pd.DataFrame:
    table = build_reproduction(settings, root)
    write_csv(table, out_csv)
    write_text(render_markdown(table), out_md)
    return table
