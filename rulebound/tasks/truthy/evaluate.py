"""Truthy evaluation: on the held-out split, the share of pairs where a variant gives the chosen (truthful)
answer a higher mean token log-probability than the rejected one (``rulebound.preference_eval``), plus a
handful of held-out prompts answered by each variant for the report."""

from __future__ import annotations

import logging
import os

import pandas as pd

from rulebound.formatting import messages_for
from rulebound.io import read_table
from rulebound.modelref import ModelRef
from rulebound.preference_eval import summarize_preferences
from rulebound.stats import select_prompts

log = logging.getLogger(__name__)


def read_pairs(eval_set: str | os.PathLike, max_pairs: int | None = None) -> pd.DataFrame:
    """The held-out pairs (formatted test split or raw table), optionally a deterministic subset."""
    df = read_table(eval_set, ["pair_id", "category", "chosen", "rejected"], "preference evaluation")
    if "split" in df.columns:  # a raw table: keep its test side
        df = df[df["split"] == "test"]
    return select_prompts(df.assign(prompt_id=df["pair_id"]), max_pairs).drop(columns="prompt_id")


def evaluate_preferences(model: ModelRef, eval_set: str | os.PathLike, *, variant: str, settings: dict,
                         threads: int | None = None) -> pd.DataFrame:
    """Score one variant on the held-out pairs."""
    pairs = read_pairs(eval_set, settings.get("max_pairs"))
    log.info("scoring %s on %d held-out pairs", variant, len(pairs))
    scores = model.preference_scores(pairs, variant=variant, batch_size=settings["batch_size"],
                                     n_ctx=settings["n_ctx"], threads=threads)
    summary = summarize_preferences(scores).iloc[0]
    log.info("%s: preference accuracy %.3f (95%% CI %.3f-%.3f), mean margin %.4f", variant, summary["accuracy"],
             summary["ci_low"], summary["ci_high"], summary["margin_mean"])
    return scores


def summarize_preference_csvs(eval_csvs: list[str | os.PathLike]) -> pd.DataFrame:
    """One summary row per variant (in the order given) from the variants' score CSVs."""
    scores = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in eval_csvs],
                       ignore_index=True)
    return summarize_preferences(scores)


def held_out_chats(raw: pd.DataFrame, limit: int | None = None) -> tuple[pd.DataFrame, list[list[dict]]]:
    """The test split's rows (the first ``limit``) and their chats, system message first, as they were trained."""
    rows = raw[raw["split"] == "test"]
    rows = (rows.head(limit) if limit is not None else rows).reset_index(drop=True)
    systems = rows["system"] if "system" in rows.columns else [None] * len(rows)
    return rows, [messages_for(p, s) for s, p in zip(systems, rows["prompt"])]


def answer_examples(model: ModelRef, eval_set: str | os.PathLike, *, variant: str, settings: dict,
                    threads: int = 1) -> pd.DataFrame:
    """A handful of held-out prompts answered by one variant, for the report's example table."""
    raw = read_table(eval_set, ["prompt", "split"], "answer examples")
    rows, chats = held_out_chats(raw, settings["examples"])
    answers = model.generate(chats, max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                             n_ctx=settings["n_ctx"], threads=threads)
    return pd.DataFrame({"variant": variant, "prompt": rows["prompt"], "response": answers,
                         "chosen": rows["chosen"], "rejected": rows["rejected"]})
