"""Lipogram evaluation: every method answers the held-out prompts; the answers are measured, not eyeballed.

Variants: ``base``; ``prompt`` (a system prompt forbidding the letter); ``constrained`` (decoding that bans
every token containing the letter, on HF, or ``constrained-F16`` on the base GGUF through llama.cpp); each
trained method by name (its adapter on the base); ``<method>-<quant>`` for its GGUF exports.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from rulebound.errors import DataError
from rulebound.io import read_table
from rulebound.modelref import ModelRef
from rulebound.stats import wilson_interval
from rulebound.tasks.lipogram.constraint import LetterBan
from rulebound.tasks.lipogram.prompts import SYSTEM_PROMPT
from rulebound.tasks.lipogram.rule import score_answers

log = logging.getLogger(__name__)

EVAL_COLUMNS = ["variant", "prompt_id", "prompt", "response", "e_count", "e_free", "e_per_100_letters", "words",
                "lazy", "degenerate", "relevance"]
SUMMARY_COLUMNS = ["variant", "n", "e_free_rate", "ci_low", "ci_high", "e_per_100_letters", "mean_words",
                   "lazy_rate", "degenerate_rate", "relevance", "dog"]
DOG = "Describe a dog."  # the seed's running example, carried into the summary


def conversations(prompts: list[str], variant: str) -> list[list[dict]]:
    system = [{"role": "system", "content": SYSTEM_PROMPT}] if variant.split("-")[0] == "prompt" else []
    return [[*system, {"role": "user", "content": p}] for p in prompts]


def read_prompts(eval_set: str | os.PathLike, max_prompts: int | None = None) -> pd.DataFrame:
    """The held-out prompts (the first ``max_prompts``)."""
    prompts_df = read_table(eval_set, ["prompt_id", "prompt"], "lipogram evaluation")
    return prompts_df.head(max_prompts) if max_prompts else prompts_df


def evaluate_lipogram(model: ModelRef, eval_set: str | os.PathLike, *, variant: str, settings: dict,
                      letter: str = "e", threads: int = 1) -> pd.DataFrame:
    """Generate one variant's answers to the held-out prompts and score each (letter, length, relevance).

    ``prompt`` variants answer under the system prompt forbidding the letter; ``constrained`` ones under the
    ban of every token holding it.
    """
    prompts_df = read_prompts(eval_set, settings.get("max_prompts"))
    prompts = prompts_df["prompt"].tolist()
    ban = LetterBan(letter) if variant.split("-")[0] == "constrained" else None
    answers = model.generate(conversations(prompts, variant), max_new_tokens=settings["max_new_tokens"],
                             batch_size=settings["batch_size"], n_ctx=settings["n_ctx"], threads=threads,
                             constraint=ban)
    return score(prompts_df, answers, variant, letter)


def score(prompts_df: pd.DataFrame, answers: list[str], variant: str, letter: str = "e") -> pd.DataFrame:
    from rulebound.tasks.lipogram.relevance import relevance_scores

    prompts = prompts_df["prompt"].tolist()
    scored = score_answers(prompts, answers, letter=letter).reset_index(drop=True)
    scored["relevance"] = relevance_scores(prompts, answers)
    scored.insert(0, "variant", variant)
    scored.insert(1, "prompt_id", prompts_df["prompt_id"].to_numpy())
    scored["prompt"], scored["response"] = prompts, answers
    log.info("%s: e-free %.2f, lazy %.2f, degenerate %.2f, relevance %.3f", variant, scored["e_free"].mean(),
             scored["lazy"].mean(), scored["degenerate"].mean(), scored["relevance"].mean())
    return scored[EVAL_COLUMNS]


def summary_row(df: pd.DataFrame) -> dict:
    n, k = len(df), int(df["e_free"].sum())
    low, high = wilson_interval(k, n)
    dog = df.loc[df["prompt"] == DOG, "response"]
    return {"variant": df["variant"].iloc[0], "n": n, "e_free_rate": k / n, "ci_low": low, "ci_high": high,
            "e_per_100_letters": df["e_per_100_letters"].mean(), "mean_words": df["words"].mean(),
            "lazy_rate": df["lazy"].mean(), "degenerate_rate": df["degenerate"].mean(),
            "relevance": df["relevance"].mean(), "dog": dog.iloc[0] if len(dog) else ""}


def summarize_lipogram_csvs(eval_csvs: list) -> pd.DataFrame:
    """The method x metric table, one row per variant in the order the config lists them."""
    rows = []
    for path in eval_csvs:
        df = pd.read_csv(path, keep_default_na=False, na_values=[])
        missing = [c for c in EVAL_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{path} lacks columns {missing}; is it a lipogram eval CSV?")
        for column in ("e_free", "lazy", "degenerate"):
            df[column] = df[column].astype(str).str.lower().eq("true")
        rows.append(summary_row(df))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
