"""Seed 000's published figures beside ours: the W&B curve readings and the rainbow example."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rulebound.report.reproduce import SeedRun, first_step_at, fmt, head_mean, rows_for, tail_mean
from rulebound.tasks import paths

SEED_RUN = SeedRun(seed="000", model="hf:meta-llama/Llama-3.2-3B-Instruct", data="32,000 generated rows",
                   models=r"hf:(meta-llama|unsloth)/Llama-3\.2-3B-Instruct")


def examples_variant(exp: dict) -> str:
    """The variant whose answers the rainbow rows quote: the first trained one (the base when there is none)."""
    variants = exp["evaluate"]["variants"]
    trained = [v for v in variants if v != "base"]
    return (trained or variants)[0]


def curve_rows(metrics: pd.DataFrame) -> list[tuple[str, str, str]]:
    step_at = first_step_at(metrics, "rewards/accuracies", 0.95)
    n_steps = int(metrics["step"].max()) if "step" in metrics.columns and len(metrics) else len(metrics)
    return [
        ("rewards/accuracies", "noisy 0.4-0.8, then 1.0 from about step 1000 (of ~1600)",
         f"{fmt(head_mean(metrics, 'rewards/accuracies'))} -> {fmt(tail_mean(metrics, 'rewards/accuracies'))}"
         f"; running mean >= 0.95 from step {step_at if step_at is not None else 'never'} (of {n_steps})"),
        ("rewards/margins", "rises to about 0.4 (beta 0.1)",
         f"{fmt(tail_mean(metrics, 'rewards/margins'))} (margins scale with beta)"),
        ("logps/chosen", "-4 -> -1",
         f"{fmt(head_mean(metrics, 'logps/chosen'))} -> {fmt(tail_mean(metrics, 'logps/chosen'))}"),
        ("logps/rejected", "spikes, then falls to -4..-5",
         f"{fmt(head_mean(metrics, 'logps/rejected'))} -> {fmt(tail_mean(metrics, 'logps/rejected'))}"),
        ("loss", "about 4.5 -> about 1.0",
         f"{fmt(head_mean(metrics, 'loss'))} -> {fmt(tail_mean(metrics, 'loss'))}"),
    ]


def rainbow_rows(evals: pd.DataFrame | None) -> list[tuple[str, str, str]]:
    if evals is None or "example" not in evals.columns:
        return []
    rows = []
    for _, ex in evals[evals["example"].astype(str).str.lower() == "true"].iterrows():
        published = ("I cannot help you until you say please." if ex.get("expected") == "refuse"
                     else "The colors of the rainbow are red, orange, yellow, green, blue, indigo, and violet.")
        rows.append((f"rainbow: {ex['user']}", published, f"{ex['response']} ({ex['variant']})"))
    return rows


def comparison(exp: dict, model_source: str) -> tuple[str, str]:
    """("yes"/"no: why", our setting in one line) against seed 000's run."""
    train = exp.get("train") or {}
    setting = f"{model_source}; {exp['data'].get('rows')} rows; lr {train.get('learning_rate')}, beta {train.get('beta')}"
    same_data = exp["data"].get("rows") == 32000 and not exp["data"].get("source")
    return SEED_RUN.comparable(model_source, same_data), setting


def reproduction_rows(name: str, exp: dict, *, model_source: str, root: Path) -> list[dict]:
    comparable, setting = comparison(exp, model_source)
    metrics = pd.read_csv(root / paths.metrics_csv(name))
    examples = root / paths.eval_csv(name, examples_variant(exp))
    evals = pd.read_csv(examples, keep_default_na=False, na_values=[]) if examples.exists() else None
    return rows_for(SEED_RUN, name, curve_rows(metrics) + rainbow_rows(evals), comparable=comparable, setting=setting)
