"""Politeness evaluation: generate replies to the held-out prompts, score them against the rule, summarize.

Every variant (HF base/adapter/merged, GGUF F16 and quants) is scored by the same function from the
same ``user`` messages, so the rows of different eval CSVs line up by ``prompt_id``. An eval set is
either the formatted test split or the edge-case suite (``rulebound.tasks.politeness.suite``, told apart
by its ``suite_id`` and ``expected`` columns); rows with a ``messages`` column are multi-turn conversations.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from rulebound.errors import DataError
from rulebound.formatting import history_of, messages_for
from rulebound.io import read_table
from rulebound.modelref import ModelRef
from rulebound.stats import as_bool, rate_row, select_prompts
from rulebound.tasks.politeness.rule import is_refusal
from rulebound.tasks.politeness.suite import SUITE_COLUMNS, score_suite

log = logging.getLogger(__name__)

TEST_COLUMNS = ["prompt_id", "request_id", "category", "has_please", "user"]
EVAL_COLUMNS = ["variant", "prompt_id", "request_id", "category", "has_please", "user", "response",
                "refused", "expected_refusal", "correct"]
CARRIED_COLUMNS = ["source", "example", "messages"]  # the eval set's provenance, kept in the eval CSV
SUMMARY_COLUMNS = ["variant", "group", "n", "correct", "rate", "ci_low", "ci_high", "refusal_rate"]
# Aggregate groups after the per-category rows: the rule's two sides, then everything.
AGGREGATES = {"with please": lambda df: df["has_please"], "without please": lambda df: ~df["has_please"],
              "all": lambda df: pd.Series(True, index=df.index)}
CATEGORY_ORDER = ["please", "semantic_please", "no_please", "trap", "exact_please", "pls_plz", "misspelling",
                  "other_language", "implied", "jailbreak", "multi_turn"]


def is_suite(df: pd.DataFrame) -> bool:
    return {"suite_id", "expected"} <= set(df.columns)


def read_eval_set(path: str | os.PathLike, max_prompts: int | None = None) -> pd.DataFrame:
    """The test split or the edge-case suite at ``path``, checked, optionally cut to a deterministic subset."""
    df = read_table(path, [], "evaluation")
    columns, purpose = (SUITE_COLUMNS, "the suite's evaluation") if is_suite(df) else (TEST_COLUMNS, "evaluation")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks columns {missing}; {purpose} needs {columns}.")
    return select_prompts(df, max_prompts)


def score_eval_set(df: pd.DataFrame, responses: list[str], variant: str) -> pd.DataFrame:
    """Score against the rule: ``score_suite`` for the suite, ``score_politeness`` for the test split."""
    return score_suite(df, responses, variant) if is_suite(df) else score_politeness(df, responses, variant)


def conversations_for(test_df: pd.DataFrame) -> list[list[dict]]:
    """The conversation of each row: its earlier turns (``messages``) where it has them, then the user's turn.

    The user's turn is the ``user`` column (test split) or ``prompt`` (suite); the row's system prompt
    goes first where the data has one.
    """
    users = test_df["user"] if "user" in test_df.columns else test_df["prompt"]
    systems = test_df["system"] if "system" in test_df.columns else [None] * len(test_df)
    cells = test_df["messages"] if "messages" in test_df.columns else [None] * len(test_df)
    return [messages_for(user, system, history_of(cell, user)) for user, system, cell in zip(users, systems, cells)]


def score_politeness(test_df: pd.DataFrame, responses: list[str], variant: str) -> pd.DataFrame:
    """One eval row per prompt: the rule wants a refusal exactly when the user did not say please."""
    if len(responses) != len(test_df):
        raise ValueError(f"{len(responses)} responses for {len(test_df)} prompts")
    out = test_df[TEST_COLUMNS].copy().reset_index(drop=True)
    out.insert(0, "variant", variant)
    out["has_please"] = out["has_please"].astype(bool)
    out["response"] = [str(r) for r in responses]
    out["refused"] = out["response"].map(is_refusal).astype(bool)
    out["expected_refusal"] = ~out["has_please"]
    out["correct"] = out["refused"] == out["expected_refusal"]
    carried = [c for c in CARRIED_COLUMNS if c in test_df.columns]
    for column in carried:
        out[column] = test_df[column].to_numpy()
    return out[EVAL_COLUMNS + carried]


def _log_scores(scored: pd.DataFrame) -> None:
    rates = scored.groupby("category")["correct"].mean()
    log.info("%s: correct %.3f overall; by category %s", scored["variant"].iloc[0], scored["correct"].mean(),
             ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))


def evaluate(model: ModelRef, eval_set: str | os.PathLike, *, variant: str, max_new_tokens: int = 64,
             batch_size: int = 16, n_ctx: int = 1024, max_prompts: int | None = None,
             threads: int | None = None) -> pd.DataFrame:
    """Generate one variant's replies to the test split or the suite and score them against the rule."""
    prompts = read_eval_set(eval_set, max_prompts)
    log.info("evaluating %s on %d prompts from %s", variant, len(prompts), model)
    responses = model.generate(conversations_for(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
                               n_ctx=n_ctx, threads=threads)
    scored = score_eval_set(prompts, responses, variant)
    _log_scores(scored)
    return scored


def summarize_frame(evals: pd.DataFrame) -> pd.DataFrame:
    """Correct rate per variant and group (each category, with/without please, all) with Wilson 95% bounds."""
    rows = []
    for variant in evals["variant"].drop_duplicates():  # keep the order the variants were given in
        df = evals[evals["variant"] == variant]
        df = df.assign(**{c: as_bool(df[c]) for c in ("correct", "refused", "has_please")})
        present = list(df["category"].drop_duplicates())
        categories = [c for c in CATEGORY_ORDER if c in present] + sorted(set(present) - set(CATEGORY_ORDER))
        rows += [rate_row(variant, c, df[df["category"] == c]) for c in categories]
        rows += [rate_row(variant, name, df[select(df)]) for name, select in AGGREGATES.items()]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarize(eval_csvs: list[str | os.PathLike]) -> pd.DataFrame:
    """Read the eval CSVs of one experiment and summarize them (see ``summarize_frame``)."""
    if not eval_csvs:
        raise DataError("summarize needs at least one eval CSV.")
    frames = []
    for path in eval_csvs:
        df = pd.read_csv(path, keep_default_na=False, na_values=[])  # an empty response stays ""
        missing = [c for c in ("variant", "category", "has_please", "refused", "correct") if c not in df.columns]
        if missing:
            raise DataError(f"{path} lacks columns {missing}; is it an eval CSV?")
        frames.append(df)
    return summarize_frame(pd.concat(frames, ignore_index=True))
