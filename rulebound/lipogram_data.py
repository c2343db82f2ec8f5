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

import pandas as pd

from rulebound import lipogram
from rulebound.errors import DataError

log = logging.getLogger(__name__)


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def build_prompt_splits(*, seed: int, train_prompts: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(GRPO/distill prompts, held-out eval prompts); the two never share a prompt."""
    train = lipogram.train_prompts()
    held_out = lipogram.eval_prompts()
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
    scored = lipogram.score_answers(answers["prompt"].tolist(), answers["answer"].tolist(), letter=letter)
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
        qa = lipogram.lipogram_qa()
        parts.append(_as_rows(qa["prompt"], qa["completion"], "rulebound e-free Q/A"))
        stats["rulebound e-free Q/A"] = {"rows": len(qa), "kept": len(qa)}
    if source:
        from rulebound.ingest import read_source

        dialogues, where = read_source(source, split=split)
        filtered, hub_stats = lipogram.efree_sft_rows(dialogues, letter=letter)
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
