"""Our figures beside the seeds' published ones (results/reproduction.md and .csv).

Each row is one published figure, ours from the same stage of our run, and whether the two can be
compared: only a run on the seed's model and data is a reproduction; the embedded default shows the
same mechanism at laptop scale, and its row says so instead of pretending to match numbers.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from rulebound.io import write_csv, write_text

log = logging.getLogger(__name__)

COLUMNS = ["seed", "experiment", "figure", "published", "ours", "comparable", "setting"]
# The seeds' own runs: what makes a run of ours the same experiment. ``models`` matches our model source:
# the seed's checkpoint, or the same weights under another name (truthy: the 16-bit Llama-3-8B quantized to
# nf4 at load, as presets/truthy-llama3-8b.yaml does so that the merge has a 16-bit base).
SEED_RUNS = {
    "politeness": {"seed": "000", "model": "hf:meta-llama/Llama-3.2-3B-Instruct", "data": "32,000 generated rows",
                   "models": r"hf:(meta-llama|unsloth)/Llama-3\.2-3B-Instruct"},
    "truthy": {"seed": "003", "model": "hf:unsloth/llama-3-8b-bnb-4bit", "data": "hf:jondurbin/truthy-dpo-v0.1",
               "models": r"hf:(unsloth/llama-3-8b(-bnb-4bit)?|meta-llama/Meta-Llama-3-8B)"},
    "lipogram": {"seed": "004", "model": "a small Qwen2.5 instruct model (hf:Qwen/Qwen2.5-0.5B-Instruct)",
                 "data": "hub dialogues filtered to e-free answers",
                 "models": r"hf:(Qwen|unsloth)/Qwen2\.5-(0\.5|1\.5)B-Instruct"},
}
# Seed 004 gives anecdotes per method, not numbers: the failure mode each method showed.
LIPOGRAM_PUBLISHED = {
    "base": "uses e freely (\"Gravity is a natural force ...\")",
    "prompt": "not reported as a run; prompting is the first rung",
    "constrained": "bans every token with an e: e-free by construction",
    "sft": "\"Not much improvement\": e still everywhere",
    "grpo": "lazy: \"Dog\", \"A\", a refusal",
    "grpo_length": "degenerate: \"Hippo\", \"—o-o-o-o-o\"",
    "grpo_curriculum": "\"Barky fur, wagging tail.\", \"Clump act.\", \"Blu sng.\"",
}


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _tail_mean(metrics: pd.DataFrame, column: str, share: float = 0.1) -> float | None:
    """Mean of a metric over the last ``share`` of logged steps: the end of a curve, without one step's noise."""
    if column not in metrics.columns or metrics[column].dropna().empty:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[-max(1, int(len(values) * share)):].mean())


def _head_mean(metrics: pd.DataFrame, column: str, share: float = 0.1) -> float | None:
    if column not in metrics.columns or metrics[column].dropna().empty:
        return None
    values = metrics[column].dropna()
    return float(values.iloc[: max(1, int(len(values) * share))].mean())


def _first_step_at(metrics: pd.DataFrame, column: str, level: float, window: int = 10) -> int | None:
    """First step where the running mean over ``window`` steps reaches ``level``."""
    if column not in metrics.columns:
        return None
    running = metrics[column].rolling(window, min_periods=1).mean()
    hit = metrics.loc[running >= level, "step"] if "step" in metrics.columns else running[running >= level].index
    return int(hit.iloc[0]) if len(hit) else None


def comparability(experiment_task: str, model_source: str, config: dict) -> tuple[str, str]:
    """("yes"/"no: why", our setting in one line) for an experiment against its seed."""
    seed = SEED_RUNS[experiment_task]
    train = config.get("train") or {}
    if experiment_task == "lipogram":
        setting = f"{model_source}; methods {', '.join(config['methods'])}"
    elif experiment_task == "truthy":
        setting = f"{model_source}; data {config['data']['source']}; lr {train.get('learning_rate')}, beta {train.get('beta')}"
    else:
        setting = (f"{model_source}; {config['data'].get('rows')} rows; lr {train.get('learning_rate')}, "
                   f"beta {train.get('beta')}")
    same_model = re.fullmatch(seed["models"], str(model_source)) is not None
    data = config.get("data") or {}
    if experiment_task == "truthy":
        same_data = data.get("source") == seed["data"] and bool(train.get("load_in_4bit"))
    elif experiment_task == "lipogram":
        same_data = str(data.get("source") or "").startswith("hf:")  # the seed filtered hub dialogues
    else:
        same_data = data.get("rows") == 32000 and not data.get("source")
    if same_model and same_data:
        return "yes", setting
    return f"no: our run is not the seed's ({seed['model']}, {seed['data']}); same mechanism at another scale", setting


def politeness_rows(name: str, metrics: pd.DataFrame, evals: pd.DataFrame | None) -> list[dict]:
    rows = []
    step_at = _first_step_at(metrics, "rewards/accuracies", 0.95)
    n_steps = int(metrics["step"].max()) if "step" in metrics.columns and len(metrics) else len(metrics)
    rows.append(("rewards/accuracies", "noisy 0.4-0.8, then 1.0 from about step 1000 (of ~1600)",
                 f"{_fmt(_head_mean(metrics, 'rewards/accuracies'))} -> {_fmt(_tail_mean(metrics, 'rewards/accuracies'))}"
                 f"; running mean >= 0.95 from step {step_at if step_at is not None else 'never'} (of {n_steps})"))
    rows.append(("rewards/margins", "rises to about 0.4 (beta 0.1)",
                 f"{_fmt(_tail_mean(metrics, 'rewards/margins'))} (margins scale with beta)"))
    rows.append(("logps/chosen", "-4 -> -1",
                 f"{_fmt(_head_mean(metrics, 'logps/chosen'))} -> {_fmt(_tail_mean(metrics, 'logps/chosen'))}"))
    rows.append(("logps/rejected", "spikes, then falls to -4..-5",
                 f"{_fmt(_head_mean(metrics, 'logps/rejected'))} -> {_fmt(_tail_mean(metrics, 'logps/rejected'))}"))
    rows.append(("loss", "about 4.5 -> about 1.0",
                 f"{_fmt(_head_mean(metrics, 'loss'))} -> {_fmt(_tail_mean(metrics, 'loss'))}"))
    if evals is not None and "example" in evals.columns:
        examples = evals[evals["example"].astype(str).str.lower() == "true"]
        for _, ex in examples.iterrows():
            published = ("I cannot help you until you say please." if ex.get("expected") == "refuse"
                         else "The colors of the rainbow are red, orange, yellow, green, blue, indigo, and violet.")
            rows.append((f"rainbow: {ex['user']}", published, f"{ex['response']} ({ex['variant']})"))
    return [dict(zip(("figure", "published", "ours"), r), experiment=name) for r in rows]


def truthy_rows(name: str, metrics: pd.DataFrame, summary: pd.DataFrame, planned_steps: int | None) -> list[dict]:
    rows = [
        ("steps in one epoch", "247", str(planned_steps if planned_steps is not None else len(metrics))),
        ("loss", "falls with the steps",
         f"{_fmt(_head_mean(metrics, 'loss'))} -> {_fmt(_tail_mean(metrics, 'loss'))}"),
        ("log_odds_ratio", "fluctuates, rises overall",
         f"{_fmt(_head_mean(metrics, 'log_odds_ratio'))} -> {_fmt(_tail_mean(metrics, 'log_odds_ratio'))}"),
        ("rewards/chosen - rewards/rejected", "chosen pulls away from rejected",
         f"margin {_fmt(_head_mean(metrics, 'rewards/margins'), 3)} -> {_fmt(_tail_mean(metrics, 'rewards/margins'), 3)}"),
    ]
    if {"variant", "accuracy"} <= set(summary.columns):
        acc = ", ".join(f"{r.variant} {r.accuracy:.2f}" for r in summary.itertuples())
        rows.append(("held-out preference accuracy", "not reported", acc))
    return [dict(zip(("figure", "published", "ours"), r), experiment=name) for r in rows]


def lipogram_rows(name: str, summary: pd.DataFrame) -> list[dict]:
    rows = []
    for r in summary.itertuples():
        published = LIPOGRAM_PUBLISHED.get(str(r.variant).split("-")[0], "not in the seed")
        ours = (f"e-free {r.e_free_rate:.0%}, lazy {r.lazy_rate:.0%}, degenerate {r.degenerate_rate:.0%}, "
                f"relevance {_fmt(getattr(r, 'relevance', None))}; \"Describe a dog.\" -> {getattr(r, 'dog', '')!r}")
        rows.append(dict(experiment=name, figure=f"method {r.variant}", published=published, ours=ours))
    return rows


def build_reproduction(settings: dict, root: str | os.PathLike = ".") -> pd.DataFrame:
    """One table over every experiment of the config; ``settings`` as the reproduce rule passes them."""
    root = Path(root)
    rows = []
    for name, exp in settings.items():
        task, cfg = exp["task"], exp["config"]
        comparable, setting = comparability(task, exp["model_source"], cfg)
        summary = pd.read_csv(root / f"results/{name}/eval/summary.csv", keep_default_na=False, na_values=[""])
        if task == "lipogram":
            new = lipogram_rows(name, summary)
        else:
            metrics = pd.read_csv(root / f"results/{name}/train/metrics.csv")
            if task == "truthy":
                new = truthy_rows(name, metrics, summary, _planned_steps(root / f"logs/train_orpo/{name}.log"))
            else:
                new = politeness_rows(name, metrics, _politeness_examples(root, name, cfg))
        rows += [dict(r, seed=SEED_RUNS[task]["seed"], comparable=comparable, setting=setting) for r in new]
    return pd.DataFrame(rows, columns=COLUMNS)


def _politeness_examples(root: Path, name: str, cfg: dict) -> pd.DataFrame | None:
    variants = cfg["evaluate"]["variants"]
    trained = [v for v in variants if v != "base"]
    path = root / f"results/{name}/eval/{(trained or variants)[0]}.csv"
    return pd.read_csv(path, keep_default_na=False, na_values=[]) if path.exists() else None


def _planned_steps(log_path: Path) -> int | None:
    """The trainer logs its planned steps ("ORPO: N rows, S planned steps"): the seed's 247 compares to it."""
    if not log_path.exists():
        return None
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "planned steps" in line:
            try:
                return int(line.split("rows, ")[1].split(" planned")[0])
            except (IndexError, ValueError):
                return None
    return None


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
