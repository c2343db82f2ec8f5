"""Numbers every task shares: Wilson intervals, booleans read back from CSVs, deterministic prompt
selection under a budget, and a numerically stable log-softmax."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from rulebound.errors import DataError


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (nan, nan) when there are no trials."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes the bound is exactly 0 or 1; say so rather than 0.9999999999999999
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def rate_row(variant: str, group: str, rows: pd.DataFrame) -> dict:
    """One summary row of boolean ``correct`` (and ``refused``) columns: the rate with its Wilson 95% bounds."""
    n, k = len(rows), int(rows["correct"].sum())
    low, high = wilson_interval(k, n)
    return {"variant": variant, "group": group, "n": n, "correct": k, "rate": k / n if n else math.nan,
            "ci_low": low, "ci_high": high, "refusal_rate": rows["refused"].mean() if n else math.nan}


def as_bool(values: pd.Series) -> pd.Series:
    """Booleans from a CSV column, whether pandas parsed them or left "True"/"False" strings."""
    if values.dtype == bool:
        return values
    parsed = values.astype(str).str.strip().str.lower().map({"true": True, "false": False, "1": True, "0": False})
    if parsed.isna().any():
        raise DataError(f"column {values.name!r} holds non-boolean values, e.g. {values[parsed.isna()].iloc[0]!r}")
    return parsed.astype(bool)


def select_prompts(df: pd.DataFrame, max_prompts: int | None) -> pd.DataFrame:
    """At most ``max_prompts`` rows, the same ones every run, categories taken in turn.

    Rows are ranked by a hash of ``prompt_id`` (else ``suite_id``) within their ``category``, then categories
    are interleaved, so a small budget still covers every category (politeness: please, no_please, traps).
    Rows marked ``example`` (a seed's quoted prompts, such as politeness's rainbow question) rank first within
    their category: a report and the reproduction table quote them, so any budget of at least one row per
    category keeps them.
    """
    if max_prompts is None or max_prompts >= len(df):
        return df.reset_index(drop=True)
    if max_prompts < 1:
        raise ValueError(f"max_prompts must be at least 1 or None, got {max_prompts}")
    ids = df["prompt_id" if "prompt_id" in df.columns else "suite_id"].astype(str)
    example = (df["example"].astype(str).str.lower() == "true") if "example" in df.columns else \
        pd.Series(False, index=df.index)
    key = pd.Series([("0" if ex else "1") + hashlib.sha1(s.encode()).hexdigest() for s, ex in zip(ids, example)],
                    index=df.index)
    rank = key.groupby(df["category"]).rank(method="first")
    order = pd.DataFrame({"rank": rank, "category": df["category"]}).sort_values(["rank", "category"]).index
    return df.loc[sorted(order[:max_prompts])].reset_index(drop=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
