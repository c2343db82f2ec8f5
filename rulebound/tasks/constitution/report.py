"""The constitution report: the group x variant heatmap, the rules as written, and example chats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from rulebound.report.html import Raw, concat, esc, figures, mark, orpo_readings, read_csv, table
from rulebound.tasks.politeness.report import _conversation, plot_eval_heatmap

AGGREGATES = ("none", "multi_turn", "all")


def plot_groups(summary_csv: str | os.PathLike, out_png: str | os.PathLike) -> None:
    """Correct rate per group (rules, combinations, none, multi-turn, all) and variant."""
    plot_eval_heatmap(summary_csv, out_png)


def _summary_table(summary: pd.DataFrame) -> str:
    variants = list(summary["variant"].drop_duplicates())
    groups = list(summary["group"].drop_duplicates())
    cells = {(r.group, r.variant): f"{r.rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] n={int(r.n)}"
             for r in summary.itertuples() if pd.notna(r.rate)}
    over = {r.variant: r.refusal_rate for r in summary.itertuples() if r.group == "none"}
    rows = [[g, *(cells.get((g, v)) for v in variants)] for g in groups]
    rows.append(["over-refusal (none)", *(f"{over[v]:.2f}" if v in over else None for v in variants)])
    return table(["group", *variants], rows, "summary")


def _examples(evals: pd.DataFrame, per_category: int) -> str:
    """A few chats per combination of applying rules, each with every variant's reply (✓ when it complies)."""
    variants = list(evals["variant"].drop_duplicates())
    by_variant = {v: df.drop_duplicates("prompt_id").set_index("prompt_id")
                  for v, df in evals.groupby("variant", sort=False)}

    def answer(variant, prompt_id):
        if prompt_id not in by_variant[variant].index:
            return None
        row = by_variant[variant].loc[prompt_id]
        return Raw(f"{mark(row['correct'])} {esc(row['response'])}")

    rows = []
    for category in sorted(evals["category"].drop_duplicates(), key=lambda c: (c == "none", c)):
        for _, row in evals[evals["category"] == category].drop_duplicates("prompt_id").head(per_category).iterrows():
            rows.append([category, row["deciding"] or "(none: answer)", _conversation(row),
                         *(answer(v, row["prompt_id"]) for v in variants)])
    return table(["applies", "decides", "conversation", *variants], rows, "examples")


def html_section(entry: dict, per_category: int = 2) -> list[str]:
    """The rules as written, the compliance grid, figures, training readings and example chats."""
    rules = json.loads(Path(entry["rules"][0]).read_text(encoding="utf-8")) if entry.get("rules") else []
    body = ["<h3>The rules, in priority order</h3>",
            table(["rule", "applies", "must", "checker"],
                  [[r["name"], ", ".join(f"{k}: {v}" for k, v in r["applies"].items() if v not in (None, [], False)),
                    ", ".join(f"{k}: {v}" for k, v in r["must"].items()),
                    ", ".join(f"{k}: {v}" for k, v in r["checker"].items())] for r in rules], "rules")]
    if entry.get("summary"):
        body += ["<h3>Compliance per rule, combination and variant (95% Wilson interval)</h3>",
                 _summary_table(read_csv(entry["summary"]))]
    body += figures(entry)
    body += orpo_readings(entry.get("metrics") or {})
    evals = concat(list((entry.get("evals") or {}).values()))
    if {"variant", "user", "response", "correct", "category"} <= set(evals.columns):
        body += [f"<h3>Example chats ({per_category} per combination of rules; every variant's reply)</h3>",
                 _examples(evals, per_category)]
    return body
