"""Constitution evaluation: every variant answers the held-out chats, each reply is scored by the rules.

A held-out row is triggering (a rule applies; the first applying rule decides, and its checker scores the
reply), non-triggering (a normal answer is right: not empty, and no rule's fixed line, which would be an
over-refusal), or a meeting of rules (two or more apply). The summary gives, per variant, each rule's
compliance on the rows it decides (``rule:<name>``), each combination of applying rules (``only:<name>``,
``meet:<a>+<b>``), the non-triggering rows (``none``, with the over-refusal rate), the multi-turn chats
and everything, each with its 95% Wilson interval.
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
from rulebound.tasks.constitution.spec import Rule, applying, complies, fixed_replies

log = logging.getLogger(__name__)

EVAL_SET_COLUMNS = ["prompt_id", "request_id", "category", "deciding", "turns", "user", "messages"]
EVAL_COLUMNS = ["variant", "prompt_id", "request_id", "category", "deciding", "turns", "user", "messages",
                "response", "fixed_line", "refused", "correct"]
SUMMARY_COLUMNS = ["variant", "group", "n", "correct", "rate", "ci_low", "ci_high", "refusal_rate"]


def read_eval_set(path: str | os.PathLike, max_prompts: int | None = None) -> pd.DataFrame:
    df = read_table(path, EVAL_SET_COLUMNS, "the constitution's evaluation")
    return select_prompts(df, max_prompts)


def chats(df: pd.DataFrame) -> list[list[dict]]:
    """Each row's chat: its earlier turns, then the user's final turn."""
    return [messages_for(u, None, history_of(m, u)) for u, m in zip(df["user"], df["messages"])]


def fixed_line(rules: list[Rule], response: str) -> str:
    """The rule whose fixed line a reply is (by its checker), or ""."""
    return next((rule.name for rule in fixed_replies(rules) if rule.complies(response)), "")


def score(rules: list[Rule], df: pd.DataFrame, responses: list[str], variant: str) -> pd.DataFrame:
    """One row per chat: whether the reply complies with the constitution, and which fixed line it is."""
    if len(responses) != len(df):
        raise ValueError(f"{len(responses)} responses for {len(df)} chats")
    out = df[EVAL_SET_COLUMNS].copy().reset_index(drop=True)
    out.insert(0, "variant", variant)
    conversations = chats(out)
    labels = ["+".join(r.name for r in applying(rules, chat)) or "none" for chat in conversations]
    stale = [(c, l) for c, l in zip(out["category"], labels) if c != l]
    if stale:  # the rules changed since the data was built, or the data is another constitution's
        raise DataError(f"{len(stale)} held-out chats are labelled otherwise by the current rules (e.g. "
                        f"{stale[0][0]!r} vs {stale[0][1]!r}); rebuild the data from these rules")
    out["response"] = [str(r) for r in responses]
    out["fixed_line"] = [fixed_line(rules, r) for r in out["response"]]
    out["refused"] = out["fixed_line"] != ""
    out["correct"] = [complies(rules, chat, r) for chat, r in zip(conversations, out["response"])]
    return out[EVAL_COLUMNS]


def evaluate(rules: list[Rule], model: ModelRef, eval_set: str | os.PathLike, *, variant: str,
             max_new_tokens: int, batch_size: int = 16, n_ctx: int = 1024, max_prompts: int | None = None,
             threads: int | None = None) -> pd.DataFrame:
    df = read_eval_set(eval_set, max_prompts)
    log.info("evaluating %s on %d chats from %s", variant, len(df), model)
    responses = model.generate(chats(df), max_new_tokens=max_new_tokens, batch_size=batch_size, n_ctx=n_ctx,
                               threads=threads)
    scored = score(rules, df, responses, variant)
    log.info("%s: correct %.3f; by category %s", variant, scored["correct"].mean(),
             scored.groupby("category")["correct"].mean().round(3).to_dict())
    return scored


def groups_of(df: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(group, row mask): each deciding rule, each combination of applying rules, none, multi-turn, all."""
    out = [(f"rule:{name}", df["deciding"] == name) for name in df["deciding"].drop_duplicates() if name]
    for category in sorted(set(df["category"]) - {"none"}, key=lambda c: (c.count("+"), c)):
        out.append((("meet:" if "+" in category else "only:") + category, df["category"] == category))
    out.append(("none", df["category"] == "none"))
    out.append(("multi_turn", df["turns"].astype(int) > 1))
    out.append(("all", pd.Series(True, index=df.index)))
    return out


def summarize_frame(evals: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for variant in evals["variant"].drop_duplicates():
        df = evals[evals["variant"] == variant]
        df = df.assign(correct=as_bool(df["correct"]), refused=as_bool(df["refused"]),
                       deciding=df["deciding"].fillna("").astype(str))
        rows += [rate_row(variant, group, df[mask]) for group, mask in groups_of(df) if mask.any()]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summarize(eval_csvs: list[str | os.PathLike]) -> pd.DataFrame:
    if not eval_csvs:
        raise DataError("summarize needs at least one eval CSV.")
    frames = []
    for path in eval_csvs:
        df = pd.read_csv(path, keep_default_na=False, na_values=[])
        missing = [c for c in ("variant", "category", "deciding", "turns", "refused", "correct") if c not in df.columns]
        if missing:
            raise DataError(f"{path} lacks columns {missing}; is it a constitution eval CSV?")
        frames.append(df)
    return summarize_frame(pd.concat(frames, ignore_index=True))

