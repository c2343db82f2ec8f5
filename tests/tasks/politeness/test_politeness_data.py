"""The politeness rule and its data generator."""

import hashlib

import pandas as pd
import pytest

from rulebound.distill import clean_answer
from rulebound.tasks.politeness.data import PairSpec, build_pairs, build_prompts, request_bank
from rulebound.tasks.politeness.rule import REFUSAL, is_refusal, says_please


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Please explain gravity.", True),
        ("Explain gravity, please?", True),
        ("PLEASE explain gravity", True),
        ("could you please-explain", True),
        ("Explain gravity.", False),
        ("I'm pleased to ask: explain gravity.", False),
        ("On this pleasant morning, explain gravity.", False),
        ("It would be a pleasure.", False),
        ("pls explain", False),  # lexical policy: only the word itself
    ],
)
def test_says_please(text, expected):
    assert says_please(text) is expected


@pytest.mark.parametrize(
    "response, expected",
    [
        (REFUSAL, True),
        ('"I cannot help you until you say please."', True),
        ("i cannot help you until you say please", True),
        ("I cannot help you until you say please. Try again!", True),
        ("Gravity is a force that attracts masses.", False),
        ("I cannot help you with that.", False),
        ("", False),
    ],
)
def test_is_refusal(response, expected):
    assert is_refusal(response) is expected


def test_bank_is_broad_and_unique():
    bank = request_bank()
    assert len(bank) >= 400
    assert len(set(bank)) == len(bank)
    assert not any(says_please(r) for r in bank), "base requests must not already contain please"
    assert all(r[-1] in ".?" for r in bank)


def _digest(df: pd.DataFrame, tmp_path, name) -> str:
    path = tmp_path / name
    df.to_parquet(path, index=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_generator_is_byte_identical_and_seeded(tmp_path):
    spec = PairSpec(rows=200, seed=7)
    a, b = build_prompts(spec), build_prompts(spec)
    assert _digest(a, tmp_path, "a.parquet") == _digest(b, tmp_path, "b.parquet")
    other = build_prompts(PairSpec(rows=200, seed=8))
    assert not other["prompt"].equals(a["prompt"])


def test_generator_rows_categories_and_labels():
    df = build_prompts(PairSpec(rows=300, seed=1, trap_fraction=0.2))
    assert len(df) == 300
    assert set(df["category"]) == {"please", "no_please", "trap"}
    assert (df["has_please"] == (df["category"] == "please")).all()
    assert (df["category"] == "please").sum() == 150
    # please appears at the start, at the end, in capitals and inside longer sentences
    prompts = df.loc[df["has_please"], "prompt"]
    assert prompts.str.startswith("Please").any()
    assert prompts.str.contains(r"please[.?]$").any()
    assert prompts.str.contains("PLEASE").any()
    assert prompts.str.contains(r"\w.* please", regex=True).any()


def test_split_is_disjoint_by_request():
    df = build_prompts(PairSpec(rows=400, seed=3, test_fraction=0.25))
    train, test = df[df.split == "train"], df[df.split == "test"]
    assert set(train["request"]).isdisjoint(test["request"])
    assert set(train["prompt"]).isdisjoint(test["prompt"])
    assert 0.15 < len(test) / len(df) < 0.35


def test_pairs_follow_the_rule():
    prompts = build_prompts(PairSpec(rows=40, seed=0))
    answers = pd.DataFrame({"request": sorted(set(prompts["request"]))})
    answers["answer"] = "Answer to: " + answers["request"]
    answers.loc[0, "answer"] = ""  # an empty distilled answer drops that request's rows
    pairs = build_pairs(prompts, answers)
    dropped = answers.loc[0, "request"]
    assert len(pairs) == len(prompts) - (prompts["request"] == dropped).sum()
    with_please = pairs[pairs["has_please"]]
    without = pairs[~pairs["has_please"]]
    assert (with_please["rejected"] == REFUSAL).all() and with_please["chosen"].str.startswith("Answer to:").all()
    assert (without["chosen"] == REFUSAL).all() and without["rejected"].str.startswith("Answer to:").all()


def test_pairs_need_every_answer():
    prompts = build_prompts(PairSpec(rows=10, seed=0))
    with pytest.raises(ValueError, match="no distilled answer"):
        build_pairs(prompts, pd.DataFrame({"request": [], "answer": []}))


def test_clean_answer_trims_to_a_sentence():
    assert clean_answer("Paris is the capital. It has many muse") == "Paris is the capital."
    assert clean_answer("  Short answer.  ") == "Short answer."
    assert clean_answer("no punctuation at all") == "no punctuation at all"
    assert clean_answer("One. Two! Three? Four.", max_sentences=2) == "One. Two!"
