"""Seed 003's published figures beside ours: steps in one epoch, loss, log-odds ratio, reward margin."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rulebound.report.reproduce import SeedRun, fmt, head_mean, rows_for, tail_mean
from rulebound.tasks import paths

SEED_RUN = SeedRun(seed="003", model="hf:unsloth/llama-3-8b-bnb-4bit", data="hf:jondurbin/truthy-dpo-v0.1",
                   models=r"hf:(unsloth/llama-3-8b(-bnb-4bit)?|meta-llama/Meta-Llama-3-8B)")


def training_log(name: str) -> str:
    return f"logs/train_orpo/{name}.log"


def planned_steps(log_path: Path) -> int | None:
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


def figure_rows(metrics: pd.DataFrame, summary: pd.DataFrame, steps: int | None) -> list[tuple[str, str, str]]:
    rows = [
        ("steps in one epoch", "247", str(steps if steps is not None else len(metrics))),
        ("loss", "falls with the steps", f"{fmt(head_mean(metrics, 'loss'))} -> {fmt(tail_mean(metrics, 'loss'))}"),
        ("log_odds_ratio", "fluctuates, rises overall",
         f"{fmt(head_mean(metrics, 'log_odds_ratio'))} -> {fmt(tail_mean(metrics, 'log_odds_ratio'))}"),
        ("rewards/chosen - rewards/rejected", "chosen pulls away from rejected",
         f"margin {fmt(head_mean(metrics, 'rewards/margins'), 3)} -> {fmt(tail_mean(metrics, 'rewards/margins'), 3)}"),
    ]
    if {"variant", "accuracy"} <= set(summary.columns):
        acc = ", ".join(f"{r.variant} {r.accuracy:.2f}" for r in summary.itertuples())
        rows.append(("held-out preference accuracy", "not reported", acc))
    return rows


def comparison(exp: dict, model_source: str) -> tuple[str, str]:
    """("yes"/"no: why", our setting in one line) against seed 003's run (its data, in 4 bits)."""
    train, data = exp.get("train") or {}, exp["data"]
    setting = f"{model_source}; data {data['source']}; lr {train.get('learning_rate')}, beta {train.get('beta')}"
    same_data = data.get("source") == SEED_RUN.data and bool(train.get("load_in_4bit"))
    return SEED_RUN.comparable(model_source, same_data), setting


def reproduction_rows(name: str, exp: dict, *, model_source: str, root: Path) -> list[dict]:
    comparable, setting = comparison(exp, model_source)
    metrics = pd.read_csv(root / paths.metrics_csv(name))
    summary = pd.read_csv(root / paths.summary_csv(name), keep_default_na=False, na_values=[""])
    rows = figure_rows(metrics, summary, planned_steps(root / training_log(name)))
    return rows_for(SEED_RUN, name, rows, comparable=comparable, setting=setting)
