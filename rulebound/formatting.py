"""Chat-template formatting of preference rows, as the seeds' ``format_chat_template`` does.

The prompt becomes the templated conversation up to the assistant's turn; chosen and rejected
become assistant turns closed with the template's end-of-turn token, so the model learns to stop.
"""

from __future__ import annotations

import logging

import pandas as pd

from rulebound.errors import DataError

log = logging.getLogger(__name__)


def end_of_turn(tokenizer) -> str:
    """The text that closes an assistant turn in this tokenizer's chat template."""
    marker = "\x00MARK\x00"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    tail = rendered.split(marker, 1)[1]
    eos = tokenizer.eos_token
    if eos and eos in tail:
        return tail[: tail.index(eos) + len(eos)]
    return tail.rstrip("\n") or (eos or "")


def messages_for(user: str, system: str | None = None, history: list[dict] | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.extend(history or [])
    messages.append({"role": "user", "content": user})
    return messages


def format_preferences(df: pd.DataFrame, tokenizer, *, user_column: str = "prompt", system_column: str | None = None,
                       max_length: int | None = None, overlong: str = "drop") -> pd.DataFrame:
    """Apply the chat template; keep metadata columns; drop or truncate rows over ``max_length`` tokens."""
    for column in (user_column, "chosen", "rejected"):
        if column not in df.columns:
            raise DataError(f"Preference data lacks column {column!r}; it needs prompt, chosen and rejected.")
    eot = end_of_turn(tokenizer)
    out = df.rename(columns={user_column: "user"}).copy()
    systems = out[system_column] if system_column and system_column in out else [None] * len(out)
    out["prompt"] = [
        tokenizer.apply_chat_template(messages_for(u, s), tokenize=False, add_generation_prompt=True)
        for u, s in zip(out["user"], systems)
    ]
    out["chosen"] = out["chosen"].astype(str) + eot
    out["rejected"] = out["rejected"].astype(str) + eot
    if max_length:
        out = _apply_length_limit(out, tokenizer, max_length, overlong)
    return out.reset_index(drop=True)


def _apply_length_limit(df: pd.DataFrame, tokenizer, max_length: int, overlong: str) -> pd.DataFrame:
    def n_tokens(texts):
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    prompt_len = pd.Series(n_tokens(df["prompt"]), index=df.index)
    longest = pd.concat([pd.Series(n_tokens(df["chosen"]), index=df.index),
                         pd.Series(n_tokens(df["rejected"]), index=df.index)], axis=1).max(axis=1)
    too_long = prompt_len + longest > max_length
    if too_long.any():
        if overlong == "drop":
            log.warning("dropping %d of %d rows longer than max_length=%d tokens", too_long.sum(), len(df), max_length)
            df = df[~too_long]
        elif overlong == "truncate":
            log.warning("%d of %d rows exceed max_length=%d tokens; the trainer truncates their answers",
                        too_long.sum(), len(df), max_length)
        else:
            raise DataError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    return df


def split_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split on the generator's ``split`` column and check no prompt of test appears in train."""
    train = df[df["split"] == "train"].drop(columns="split")
    test = df[df["split"] == "test"].drop(columns="split")
    leaked = set(train["user"]) & set(test["user"])
    if leaked:
        raise DataError(f"{len(leaked)} test prompts also appear in train, e.g. {sorted(leaked)[0]!r}")
    if "request_id" in df:
        shared = set(train["request_id"]) & set(test["request_id"])
        if shared:
            raise DataError(f"{len(shared)} requests are in both train and test")
    return train.reset_index(drop=True), test.reset_index(drop=True)
