"""The truthy experiment (seed 003): ORPO on truthful-vs-false preference pairs, scored by preference accuracy.

Data: ``hf:jondurbin/truthy-dpo-v0.1`` as the seed used it, or offline ``builtin:truthy_pairs`` (rulebound's
own small set in the same style, see ``rulebound/data/truthy_pairs.md``), or a local file with the same
columns. Evaluation: on the held-out split, the share of pairs where the variant gives the chosen answer
a higher mean token log-probability than the rejected one (``rulebound.preference_eval``).
"""

from __future__ import annotations

import hashlib
import logging
import os

import pandas as pd

from rulebound.evaluate import select_prompts
from rulebound.ingest import describe_report, load_preference_source, split_holdout
from rulebound.io import read_table
from rulebound.preference_eval import preference_scores_gguf, preference_scores_hf, summarize_preferences

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


def read_pairs(eval_set: str | os.PathLike, max_pairs: int | None = None) -> pd.DataFrame:
    """The held-out pairs (formatted test split or raw table), optionally a deterministic subset."""
    df = read_table(eval_set, ["pair_id", "category", "chosen", "rejected"], "preference evaluation")
    if "split" in df.columns:  # a raw table: keep its test side
        df = df[df["split"] == "test"]
    return select_prompts(df.assign(prompt_id=df["pair_id"]), max_pairs).drop(columns="prompt_id")


def evaluate_preferences(eval_set: str | os.PathLike, *, variant: str, settings: dict, threads: int | None = None,
                         model=None, adapter=None, gguf=None, lora=None) -> pd.DataFrame:
    """Score one variant on the held-out pairs: an HF folder (+ adapter) or a GGUF (+ LoRA GGUF)."""
    pairs = read_pairs(eval_set, settings.get("max_pairs"))
    log.info("scoring %s on %d held-out pairs", variant, len(pairs))
    if gguf:
        scores = preference_scores_gguf(gguf, pairs, n_ctx=settings.get("n_ctx", 1024), lora_path=lora,
                                        variant=variant, threads=threads)
    else:
        scores = preference_scores_hf(model, pairs, adapter_dir=adapter, batch_size=settings.get("batch_size", 8),
                                      variant=variant, threads=threads)
    summary = summarize_preferences(scores).iloc[0]
    log.info("%s: preference accuracy %.3f (95%% CI %.3f-%.3f), mean margin %.4f", variant, summary["accuracy"],
             summary["ci_low"], summary["ci_high"], summary["margin_mean"])
    return scores


def summarize_preference_csvs(eval_csvs: list[str | os.PathLike]) -> pd.DataFrame:
    """One summary row per variant (in the order given) from the variants' score CSVs."""
    scores = pd.concat([pd.read_csv(p, keep_default_na=False, na_values=[""]) for p in eval_csvs],
                       ignore_index=True)
    return summarize_preferences(scores)
