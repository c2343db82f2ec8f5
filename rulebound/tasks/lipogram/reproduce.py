"""Seed 004's published anecdotes per method beside our numbers for the same method."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rulebound.report.reproduce import SeedRun, fmt, rows_for
from rulebound.tasks import paths

SEED_RUN = SeedRun(seed="004", model="a small Qwen2.5 instruct model (hf:Qwen/Qwen2.5-0.5B-Instruct)",
                   data="hub dialogues filtered to e-free answers",
                   models=r"hf:(Qwen|unsloth)/Qwen2\.5-(0\.5|1\.5)B-Instruct")
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


def method_rows(summary: pd.DataFrame) -> list[tuple[str, str, str]]:
    rows = []
    for r in summary.itertuples():
        published = LIPOGRAM_PUBLISHED.get(str(r.variant).split("-")[0], "not in the seed")
        ours = (f"e-free {r.e_free_rate:.0%}, lazy {r.lazy_rate:.0%}, degenerate {r.degenerate_rate:.0%}, "
                f"relevance {fmt(getattr(r, 'relevance', None))}; \"Describe a dog.\" -> {getattr(r, 'dog', '')!r}")
        rows.append((f"method {r.variant}", published, ours))
    return rows


def comparison(exp: dict, model_source: str) -> tuple[str, str]:
    """("yes"/"no: why", our setting in one line) against seed 004's run (filtered hub dialogues)."""
    setting = f"{model_source}; methods {', '.join(exp['methods'])}"
    same_data = str((exp.get("data") or {}).get("source") or "").startswith("hf:")
    return SEED_RUN.comparable(model_source, same_data), setting


def reproduction_rows(name: str, exp: dict, *, model_source: str, root: Path) -> list[dict]:
    comparable, setting = comparison(exp, model_source)
    summary = pd.read_csv(root / paths.summary_csv(name), keep_default_na=False, na_values=[""])
    return rows_for(SEED_RUN, name, method_rows(summary), comparable=comparable, setting=setting)
