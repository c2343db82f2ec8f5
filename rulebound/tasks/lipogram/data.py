"""Lipogram data: GRPO / held-out prompt splits and the SFT set (the constraint distilled, plus e-free Q/A).

SFT rows are prompt-completion pairs whose completion never uses the letter: the base model's own answers
written under constrained decoding (so the model learns its own voice without the letter, not canned
text), the Q/A set shipped with rulebound, and optionally hub or local dialogues filtered to lipograms,
as the seed did. Every source reports how many rows survive its filter.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator

import pandas as pd

from rulebound.errors import DataError
from rulebound.tasks.lipogram import prompts as banks
from rulebound.tasks.lipogram.rule import is_e_free, score_answers, word_count

log = logging.getLogger(__name__)


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def build_prompt_splits(*, seed: int, train_prompts: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(GRPO/distill prompts, held-out eval prompts); the two never share a prompt."""
    train = banks.train_prompts()
    held_out = banks.eval_prompts()
    leaked = {_norm(p) for p in train} & {_norm(p) for p in held_out}
    if leaked:
        raise DataError(f"{len(leaked)} held-out lipogram prompts are also training prompts, e.g. {sorted(leaked)[0]!r}")
    random.Random(seed).shuffle(train)
    if train_prompts:
        train = train[:train_prompts]
    train_df = pd.DataFrame({"prompt_id": range(len(train)), "prompt": train})
    eval_df = pd.DataFrame({"prompt_id": range(len(held_out)), "prompt": held_out})
    return train_df, eval_df


def _as_rows(prompts, completions, source: str) -> pd.DataFrame:
    return pd.DataFrame({
        "prompt": [json.dumps([{"role": "user", "content": p}]) for p in prompts],
        "completion": list(completions),
        "source": source,
    })


def distilled_rows(answers: pd.DataFrame, letter: str = "e") -> tuple[pd.DataFrame, dict]:
    """Constrained answers kept when they are lipograms with some substance (not lazy, not degenerate)."""
    scored = score_answers(answers["prompt"].tolist(), answers["answer"].tolist(), letter=letter)
    keep = scored["e_free"] & ~scored["lazy"] & ~scored["degenerate"]
    stats = {"answers": len(answers), "kept": int(keep.sum()), "lazy": int(scored["lazy"].sum()),
             "degenerate": int(scored["degenerate"].sum())}
    kept = answers[keep.to_numpy()]
    return _as_rows(kept["prompt"], kept["answer"], "constrained decoding"), stats


def build_sft_rows(answers: pd.DataFrame, *, eval_prompts: list[str], letter: str = "e", shipped_qa: bool = True,
                   source: str | None = None, split: str = "train", seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """All SFT rows, shuffled, with per-source counts; held-out prompts never enter training."""
    parts, stats = [], {}
    rows, stats["constrained decoding"] = distilled_rows(answers, letter)
    parts.append(rows)
    if shipped_qa:
        qa = banks.lipogram_qa()
        parts.append(_as_rows(qa["prompt"], qa["completion"], "rulebound e-free Q/A"))
        stats["rulebound e-free Q/A"] = {"rows": len(qa), "kept": len(qa)}
    if source:
        from rulebound.ingest import read_source

        dialogues, where = read_source(source, split=split)
        filtered, hub_stats = efree_sft_rows(dialogues, letter=letter)
        filtered = filtered.assign(
            prompt=filtered["prompt"].map(lambda m: m if isinstance(m, str) else json.dumps(list(m))),
            completion=filtered["completion"].map(lambda c: c if isinstance(c, str) else c[-1]["content"]),
            source=where,
        )
        parts.append(filtered[["prompt", "completion", "source"]])
        stats[where] = hub_stats
    sft = pd.concat(parts, ignore_index=True)
    held = {_norm(p) for p in eval_prompts}
    user = sft["prompt"].map(lambda m: json.loads(m)[-1]["content"])
    leaked = user.map(_norm).isin(held)
    if leaked.any():
        log.warning("dropping %d SFT rows whose prompt is a held-out evaluation prompt", int(leaked.sum()))
        sft = sft[~leaked]
    if sft.empty:
        raise DataError("No SFT rows survived the lipogram filter; raise data.distill_prompts or keep shipped_qa.")
    sft = sft.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    log.info("SFT rows per source: %s", sft["source"].value_counts().to_dict())
    return sft, stats


_PAIRS = [("prompt", "completion"), ("prompt", "response"), ("instruction", "output"), ("question", "answer"),
          ("input", "output"), ("query", "response"), ("prompt", "answer"), ("user", "assistant")]
_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def _text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))  # content blocks


def _messages(value, role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    out = []
    for m in value:  # parquet gives numpy arrays of dicts
        r = m.get("role") or m.get("from") or ""
        out.append({"role": _ROLES.get(r, r), "content": _text(m.get("content", m.get("value")))})
    return out


def _conversations(df: pd.DataFrame) -> Iterator[list[dict]]:
    column = next((c for c in ("messages", "conversations") if c in df.columns), None)
    if column:
        for value in df[column]:
            yield _messages(value, "user")
        return
    pair = next(((p, r) for p, r in _PAIRS if p in df.columns and r in df.columns), None)
    if pair is None:
        raise DataError(
            f"Dialogues with columns {list(df.columns)} have neither a 'messages' column (lists of role/content) "
            f"nor a prompt/answer pair ({', '.join('/'.join(p) for p in _PAIRS)}); rename the columns to one of them."
        )
    for prompt, reply in zip(df[pair[0]], df[pair[1]]):
        yield _messages(prompt, "user") + _messages(reply, "assistant")


def efree_sft_rows(df: pd.DataFrame, *, letter: str = "e", min_words: int = 1) -> tuple[pd.DataFrame, dict]:
    """Prompt-completion rows for every assistant turn without the letter, as the seed filtered dialogues.

    ``prompt`` is the conversation up to that turn, ``completion`` the one assistant message. Replies of
    fewer than ``min_words`` words are dropped (``too_short``): an empty reply is trivially e-free and
    teaches nothing. Accepts ``messages`` (role/content), ShareGPT ``conversations`` (from/value) or a
    prompt/response pair of columns.
    """
    rows, turns, short = [], 0, 0
    for conversation in _conversations(df):
        for i, message in enumerate(conversation):
            if message["role"] != "assistant":
                continue
            turns += 1
            reply = message["content"].strip()
            if i == 0:  # an opening greeting answers nothing
                continue
            if word_count(reply) < min_words:
                short += 1
                continue
            if is_e_free(reply, letter):
                rows.append({"prompt": conversation[:i], "completion": [{"role": "assistant", "content": reply}]})
    if turns == 0:
        raise DataError(
            f"None of the {len(df)} dialogues has an assistant turn, so there is nothing to filter for the "
            "lipogram. Give conversations whose replies have role 'assistant' (or ShareGPT's 'gpt'), "
            "or prompt/response columns."
        )
    stats = {"rows_in": len(df), "assistant_turns": turns, "too_short": short, "e_free_kept": len(rows)}
    return pd.DataFrame(rows, columns=["prompt", "completion"]), stats


def sft_card(sft: pd.DataFrame, stats: dict, *, experiment: str, letter: str, settings: dict) -> str:
    counts = "\n".join(f"| {src} | {n} |" for src, n in sft["source"].value_counts().items())
    filters = "\n".join(f"- {src}: {json.dumps(s)}" for src, s in stats.items())
    settings_lines = "\n".join(f"- `{k}`: {v}" for k, v in sorted(settings.items()))
    words = sft["completion"].str.split().str.len()
    return f"""# Data card: {experiment} (SFT rows without the letter {letter!r})

{len(sft)} prompt-completion rows; every completion is free of {letter!r}/{letter.upper()!r}
(mean {words.mean():.1f} words, median {words.median():.0f}).

| source | rows |
| --- | ---: |
{counts}

What survived each filter:
{filters}

Settings:
{settings_lines}
"""
