"""Truthy data: ``hf:jondurbin/truthy-dpo-v0.1`` as the seed used it, or offline ``builtin:truthy_pairs``
(rulebound's own small set in the same style, see ``rulebound/data/truthy_pairs.md``), or a local file with
the same columns, ingested into the raw table with a train/test split."""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

from rulebound.ingest import describe_report, load_preference_source, split_holdout

log = logging.getLogger(__name__)

RAW_COLUMNS = ["pair_id", "category", "system", "prompt", "chosen", "rejected", "split"]
UNCATEGORIZED = "uncategorized"  # sources without a category column (truthy-dpo has none)


def build_truthy_raw(source: str, *, invalid_rows: str = "drop", test_fraction: float = 0.2, seed: int = 0,
                     split: str = "train") -> tuple[pd.DataFrame, dict]:
    """Ingest ``source`` into the raw table ``format_data`` reads: RAW_COLUMNS, one row per pair.

    ``pair_id`` is a hash of the pair's text, so it names the same pair in every run; exact duplicate
    pairs are dropped (counted in the report as ``duplicates``). Pairs sharing a prompt stay on one
    side of the split.
    """
    df, report = load_preference_source(source, split=split, invalid_rows=invalid_rows)
    if "category" in df.columns:
        category = df["category"].map(lambda v: v.strip() if isinstance(v, str) and v.strip() else UNCATEGORIZED)
    else:
        category = UNCATEGORIZED
    raw = pd.DataFrame({"category": category, "system": df["system"].astype(str), "prompt": df["prompt"],
                        "chosen": df["chosen"], "rejected": df["rejected"]})
    raw.insert(0, "pair_id", [_pair_id(*row) for row in raw[["system", "prompt", "chosen", "rejected"]].itertuples(
        index=False)])
    duplicated = raw["pair_id"].duplicated()
    if duplicated.any():
        log.warning("%s: dropped %d exact duplicate pairs", source, duplicated.sum())
        raw = raw[~duplicated]
    report["duplicates"] = int(duplicated.sum())
    train, test = split_holdout(raw, test_fraction, seed, group="prompt")
    raw = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    report.update(train_rows=len(train), test_rows=len(test))
    log.info("%s; split %d train / %d test (seed %d)", describe_report(report), len(train), len(test), seed)
    return raw[RAW_COLUMNS], report


def _pair_id(system: str, prompt: str, chosen: str, rejected: str) -> str:
    digest = hashlib.sha1(f"{system}\x00{prompt}\x00{chosen}\x00{rejected}".encode()).hexdigest()
    return f"pair-{digest[:12]}"
