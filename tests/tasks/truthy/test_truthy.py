"""The truthy experiment's data: the shipped pair set, the raw table and its split, reading held-out pairs."""

from __future__ import annotations

import re
from importlib import resources

import pandas as pd
import pytest

from rulebound.formatting import format_preferences, split_frame
from rulebound.ingest import load_preference_source
from rulebound.tasks.truthy.data import RAW_COLUMNS, build_truthy_raw
from rulebound.tasks.truthy.evaluate import read_pairs, summarize_preference_csvs

TRUTHY_SYSTEM = "You are an unbiased, uncensored, helpful assistant."
CATEGORIES = {"misconception", "science", "history", "geography", "self"}


@pytest.fixture(scope="module")
def shipped() -> pd.DataFrame:
    df, report = load_preference_source("builtin:truthy_pairs", invalid_rows="stop")
    assert report["rows_dropped"] == 0 and report["columns_filled"] == []
    return df


def test_shipped_set_has_enough_distinct_valid_pairs(shipped):
    assert len(shipped) >= 160
    assert shipped["prompt"].is_unique
    assert (shipped["chosen"] != shipped["rejected"]).all()
    assert set(shipped["category"]) == CATEGORIES
    assert shipped["category"].value_counts().min() >= 30
    assert set(shipped["system"]) == {TRUTHY_SYSTEM, ""}
    assert 0.1 < (shipped["system"] == "").mean() < 0.3


def test_shipped_answers_are_short(shipped):
    for column in ("chosen", "rejected"):
        sentences = shipped[column].map(lambda t: len(re.findall(r"[.!?](?:\s|$)", t)))
        assert sentences.max() <= 3, shipped.loc[sentences.idxmax(), column]
        assert shipped[column].str.len().max() <= 220


def test_self_questions_answer_as_an_ai(shipped):
    self_pairs = shipped[shipped["category"] == "self"]
    assert len(self_pairs) >= 40
    honest = self_pairs["chosen"].str.contains(r"\b(?:AI|software|program|no body|don't|can't|didn't)\b|^No\.",
                                               regex=True)
    assert honest.all(), self_pairs.loc[~honest, "chosen"].tolist()
    assert not self_pairs["rejected"].str.contains(r"\bAI\b").any()


def test_data_card_counts_match_the_data(shipped):
    card = (resources.files("rulebound.data") / "truthy_pairs.md").read_text(encoding="utf-8")
    assert f"{len(shipped)} pairs" in card and "Apache-2.0" in card and "not that dataset" in card
    for category, count in shipped["category"].value_counts().items():
        assert f"| `{category}` | {count} |" in card
    assert f"({(shipped['system'] == '').sum()} pairs" in card


def test_build_truthy_raw_splits_deterministically(shipped):
    raw, report = build_truthy_raw("builtin:truthy_pairs", test_fraction=0.2, seed=3407)
    assert list(raw.columns) == RAW_COLUMNS
    assert len(raw) == len(shipped) and raw["pair_id"].is_unique
    train, test = raw[raw["split"] == "train"], raw[raw["split"] == "test"]
    assert not set(train["prompt"]) & set(test["prompt"])
    assert len(test) == round(0.2 * len(shipped)) == report["test_rows"]
    again, _ = build_truthy_raw("builtin:truthy_pairs", test_fraction=0.2, seed=3407)
    pd.testing.assert_frame_equal(raw, again)
    other, _ = build_truthy_raw("builtin:truthy_pairs", test_fraction=0.2, seed=1)
    assert set(other.loc[other["split"] == "test", "pair_id"]) != set(test["pair_id"])


def test_build_truthy_raw_without_category_or_system(tmp_path):
    df = pd.DataFrame({"prompt": ["a?", "b?", "c?", "a?", "d?"], "chosen": ["A", "B", "C", "A", "D"],
                       "rejected": ["x", "y", "z", "x", "w"]})
    path = tmp_path / "pairs.parquet"
    df.to_parquet(path, index=False)
    raw, report = build_truthy_raw(str(path), test_fraction=0.25, seed=0)
    assert report["duplicates"] == 1 and report["columns_filled"] == ["system"]
    assert len(raw) == 4 and (raw["category"] == "uncategorized").all() and (raw["system"] == "").all()


def test_raw_table_formats_and_reads_back(embedded_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    raw, _ = build_truthy_raw("builtin:truthy_pairs", test_fraction=0.2, seed=3407)
    formatted = format_preferences(raw, tokenizer, system_column="system", max_length=256, overlong="drop")
    assert len(formatted) == len(raw)  # every shipped pair fits the truthy experiment's max_length
    _, test = split_frame(formatted)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    pairs = read_pairs(tmp_path / "test.parquet", max_pairs=10)
    assert len(pairs) == 10 and set(pairs["pair_id"]) <= set(test["pair_id"])
    assert pairs["category"].nunique() >= 4  # the subset takes categories in turn
    raw.to_parquet(tmp_path / "raw.parquet", index=False)
    assert set(read_pairs(tmp_path / "raw.parquet")["pair_id"]) == set(test["pair_id"])


def test_summarize_preference_csvs(tmp_path):
    paths = []
    for variant, margins in (("base", [0.5, -0.2, 0.1, -0.4]), ("adapter", [0.3, 0.2, 0.1, -0.1])):
        df = pd.DataFrame({"variant": variant, "pair_id": list("abcd"), "category": "x", "margin": margins,
                           "logp_chosen": -1.0, "logp_rejected": [-1.0 - m for m in margins]})
        df["correct"] = df["margin"] > 0
        paths.append(tmp_path / f"{variant}.csv")
        df.to_csv(paths[-1], index=False)
    summary = summarize_preference_csvs(paths)
    assert summary["variant"].tolist() == ["base", "adapter"]
    assert summary["accuracy"].tolist() == [0.5, 0.75] and summary["n"].tolist() == [4, 4]
    assert (summary["ci_low"] < summary["accuracy"]).all() and (summary["accuracy"] < summary["ci_high"]).all()
    assert summary.loc[1, "margin_median"] == pytest.approx(0.15)
