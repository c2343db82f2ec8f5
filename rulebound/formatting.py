"""Chat-template formatting of preference rows, as the seeds' ``format_chat_template`` does.

The prompt becomes the templated conversation up to the assistant's turn; chosen and rejected
become assistant turns closed with the template's end-of-turn token, so the model learns to stop.
A row with a ``messages`` column (JSON list of {role, content}, ending with the user's final turn,
which equals the row's prompt) is templated as that whole conversation; rows without one, or with
an empty cell, are single-turn as before.
"""

from __future__ import annotations

import json
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
    """The conversation for one row. A system turn goes first whenever the data has one, an empty one too:
    the seed's format_chat_template always sends the row's system message, and leaving an empty one out
    would let a template (SmolLM2's, Qwen's) put its own default system prompt in its place."""
    if isinstance(system, float) and system != system:  # NaN: no system cell
        system = None
    messages = [{"role": "system", "content": str(system)}] if system is not None else []
    messages.extend(history or [])
    messages.append({"role": "user", "content": user})
    return messages


def history_of(messages, user: str) -> list[dict]:
    """The turns before the final user turn of a row's ``messages`` (JSON text or a list); [] when empty.

    Raises DataError when the cell is not a conversation that ends with ``user``'s own turn.
    """
    if messages is None or isinstance(messages, float) or (isinstance(messages, str) and not messages.strip()):
        return []  # None, NaN or "": a single-turn row
    try:
        turns = json.loads(messages) if isinstance(messages, str) else list(messages)
    except (ValueError, TypeError):
        turns = None
    ok = isinstance(turns, list) and all(
        isinstance(t, dict) and t.get("role") in ("system", "user", "assistant") and isinstance(t.get("content"), str)
        for t in turns)
    if not ok or not turns or turns[-1]["role"] != "user" or turns[-1]["content"] != user:
        raise DataError(f"messages {str(messages)[:120]!r} must be a JSON list of {{role, content}} turns ending with "
                        f"the user's final turn {user[:60]!r}; rebuild the prompts or drop the messages column.")
    return [dict(role=t["role"], content=t["content"]) for t in turns[:-1]]


def format_preferences(df: pd.DataFrame, tokenizer, *, user_column: str = "prompt", system_column: str | None = None,
                       max_length: int | None = None, overlong: str = "drop",
                       max_prompt_length: int | None = None) -> pd.DataFrame:
    """Apply the chat template; keep metadata columns; drop or truncate rows over the length limits.

    ``max_prompt_length`` (the seeds' ORPOConfig setting, gone from TRL 1.x) caps the templated prompt.
    ``overlong: drop`` removes a row over either limit; ``truncate`` keeps the end of its prompt (the question)
    and the start of each answer, in tokens, as TRL's ORPO once did. ``result.attrs["length_limit"]`` counts
    what happened, for the data card.
    """
    for column in (user_column, "chosen", "rejected"):
        if column not in df.columns:
            raise DataError(f"Preference data lacks column {column!r}; it needs prompt, chosen and rejected.")
    if df.empty:
        raise DataError("The preference data has no rows left to format: check the data step's log for rows it "
                        "dropped (empty distilled answers, invalid rows) and its source.")
    eot = end_of_turn(tokenizer)
    out = df.rename(columns={user_column: "user"}).copy()
    systems = out[system_column] if system_column and system_column in out else [None] * len(out)
    cells = out["messages"] if "messages" in out else [None] * len(out)
    histories = [history_of(m, u) for m, u in zip(cells, out["user"])]
    out["prompt"] = [
        tokenizer.apply_chat_template(messages_for(u, s, h), tokenize=False, add_generation_prompt=True)
        for u, s, h in zip(out["user"], systems, histories)
    ]
    out["chosen"] = out["chosen"].astype(str) + eot
    out["rejected"] = out["rejected"].astype(str) + eot
    limit = {"max_length": max_length, "max_prompt_length": max_prompt_length, "overlong": overlong, "rows": len(out),
             "affected": 0}
    if max_length:
        out, limit["affected"] = _apply_length_limit(out, tokenizer, max_length, overlong, max_prompt_length)
    out = out.reset_index(drop=True)
    out.attrs["length_limit"] = limit
    return out


def _apply_length_limit(df: pd.DataFrame, tokenizer, max_length: int, overlong: str,
                        max_prompt_length: int | None = None) -> tuple[pd.DataFrame, int]:
    if overlong not in ("drop", "truncate"):
        raise DataError(f"overlong must be 'drop' or 'truncate', got {overlong!r}")
    if overlong == "truncate" and max_prompt_length and max_prompt_length >= max_length:
        raise DataError(f"max_prompt_length ({max_prompt_length}) must be below max_length ({max_length}) to "
                        "truncate: the answer needs room.")

    def n_tokens(texts):
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    prompt_len = pd.Series(n_tokens(df["prompt"]), index=df.index)
    longest = pd.concat([pd.Series(n_tokens(df["chosen"]), index=df.index),
                         pd.Series(n_tokens(df["rejected"]), index=df.index)], axis=1).max(axis=1)
    too_long = prompt_len + longest > max_length
    if max_prompt_length:
        too_long |= prompt_len > max_prompt_length
    n = int(too_long.sum())
    if not n:
        return df, 0
    if overlong == "drop":
        log.warning("dropping %d of %d rows longer than max_length=%d (prompt: %s) tokens", n, len(df), max_length,
                    max_prompt_length)
        return df[~too_long], n
    df = df.copy()
    prompt_cap = max_prompt_length or max_length // 2
    for i in df.index[too_long]:
        ids = tokenizer(df.at[i, "prompt"], add_special_tokens=False)["input_ids"]
        if len(ids) > prompt_cap or len(ids) >= max_length:
            df.at[i, "prompt"] = tokenizer.decode(ids[-prompt_cap:])  # keep the end: the question and the turn
            ids = ids[-prompt_cap:]
        room = max_length - len(ids)
        for column in ("chosen", "rejected"):
            answer = tokenizer(df.at[i, column], add_special_tokens=False)["input_ids"]
            if len(answer) > room:
                df.at[i, column] = tokenizer.decode(answer[:room])
    log.warning("truncated %d of %d rows to max_length=%d tokens (prompt: at most %d, its end kept; answers: "
                "their start)", n, len(df), max_length, prompt_cap)
    return df, n


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
