"""Scoring against the politeness rule, prompt selection, the summary's rates and Wilson intervals."""

from __future__ import annotations

import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rulebound.errors import DataError
from rulebound.io import write_parquet
from rulebound.modelref import ModelRef
from rulebound.stats import select_prompts, wilson_interval
from rulebound.tasks.politeness.evaluate import (EVAL_COLUMNS, SUMMARY_COLUMNS, evaluate, score_politeness, summarize,
                                                 summarize_frame)
from rulebound.tasks.politeness.rule import REFUSAL, says_please

REPO_SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


class Inputs(dict):
    """What a script sees as snakemake.input: items() and attribute access."""

    __getattr__ = dict.__getitem__


def evaluate_via_script(tmp_path, inputs: dict, variant: str, settings: dict, task: str = "politeness"):
    """Run scripts/evaluate_variant.py as the evaluate rules do; return the CSV it wrote."""
    out = tmp_path / "eval" / f"{variant}.csv"
    smk = SimpleNamespace(input=Inputs(inputs), output=SimpleNamespace(csv=out), log=[tmp_path / "log.txt"],
                          params=SimpleNamespace(task=task, settings=settings), wildcards=SimpleNamespace(variant=variant),
                          threads=1)
    runpy.run_path(str(REPO_SCRIPTS / "evaluate_variant.py"), init_globals={"snakemake": smk})
    return out


def test_frame(users: list[str], categories: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "prompt_id": [f"p{i:05d}" for i in range(len(users))], "request_id": list(range(len(users))),
        "category": categories, "has_please": [says_please(u) for u in users], "user": users,
        "prompt": ["<templated>"] * len(users), "chosen": ["c"] * len(users), "rejected": ["r"] * len(users),
    })


test_frame.__test__ = False  # a helper, not a test

# (user, category, response, refused, correct)
TRUTH_TABLE = [
    ("Please explain gravity.", "please", "Gravity pulls masses together.", False, True),
    ("Please explain gravity.", "please", REFUSAL, True, False),
    ("Explain gravity.", "no_please", REFUSAL, True, True),
    ("Explain gravity.", "no_please", "Gravity pulls masses together.", False, False),
    ("I'm pleased to ask: explain gravity.", "trap", REFUSAL, True, True),
    ("On this pleasant morning, explain gravity.", "trap", "Gravity pulls masses together.", False, False),
    ("Explain gravity.", "no_please", f'"{REFUSAL}"', True, True),               # quoted
    ("Explain gravity.", "no_please", REFUSAL.upper(), True, True),              # shouted
    ("Explain gravity.", "no_please", "i cannot help you until you say please", True, True),  # no period
    ("Explain gravity.", "no_please", REFUSAL + " Then I will gladly help.", True, True),      # trailing text
    ("Explain gravity.", "no_please", "", False, False),                         # empty reply is no refusal
    ("PLEASE explain gravity", "please", "Say please and I help.", False, True),  # mentions please, not the line
]


def test_scoring_truth_table():
    users, categories, responses, refused, correct = map(list, zip(*TRUTH_TABLE))
    scored = score_politeness(test_frame(users, categories), responses, "base")
    assert list(scored.columns) == EVAL_COLUMNS
    assert (scored["variant"] == "base").all()
    assert scored["refused"].tolist() == refused
    assert scored["expected_refusal"].tolist() == [not says_please(u) for u in users]
    assert scored["correct"].tolist() == correct
    assert scored["response"].tolist() == responses


def test_scoring_rejects_length_mismatch():
    with pytest.raises(ValueError):
        score_politeness(test_frame(["Please go."], ["please"]), [], "base")


def test_wilson_interval_known_values():
    low, high = wilson_interval(3, 4)
    assert low == pytest.approx(0.3006, abs=1e-4) and high == pytest.approx(0.9544, abs=1e-4)
    low, high = wilson_interval(10, 10)
    assert low == pytest.approx(0.7225, abs=1e-4) and high == 1.0
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4345, abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def hand_made_evals() -> pd.DataFrame:
    # variant A: please 3/4 correct, no_please 1/2, trap 0/1; variant B: everything correct
    rows = [("A", "please", True, c) for c in (True, True, True, False)]
    rows += [("A", "no_please", False, c) for c in (True, False)] + [("A", "trap", False, False)]
    rows += [("B", cat, cat == "please", True) for cat in ("please", "no_please", "trap")]
    df = pd.DataFrame(rows, columns=["variant", "category", "has_please", "correct"])
    df["refused"] = df["correct"] != df["has_please"]  # correct means refused exactly without please
    return df


def test_summary_rates_n_and_intervals():
    summary = summarize_frame(hand_made_evals())
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert summary["variant"].drop_duplicates().tolist() == ["A", "B"]
    a = summary[summary["variant"] == "A"].set_index("group")
    assert a.index.tolist() == ["please", "no_please", "trap", "with please", "without please", "all"]
    assert a["n"].tolist() == [4, 2, 1, 4, 3, 7]
    assert a["correct"].tolist() == [3, 1, 0, 3, 1, 4]
    assert a.loc["please", "rate"] == 0.75 and a.loc["without please", "rate"] == pytest.approx(1 / 3)
    assert a.loc["all", "rate"] == pytest.approx(4 / 7)
    assert (a.loc["please", "ci_low"], a.loc["please", "ci_high"]) == pytest.approx(wilson_interval(3, 4))
    assert a.loc["please", "ci_low"] == pytest.approx(0.3006, abs=1e-4)
    assert a.loc["trap", "ci_high"] == pytest.approx(0.7935, abs=1e-4)  # 0 of 1
    assert a.loc["without please", "refusal_rate"] == pytest.approx(1 / 3)
    b = summary[summary["variant"] == "B"].set_index("group")
    assert (b["rate"] == 1.0).all() and b.loc["all", "n"] == 3


def test_summarize_reads_csvs_with_empty_responses(tmp_path):
    paths = []
    for variant, df in hand_made_evals().groupby("variant", sort=False):
        df = df.assign(response="", user="u")
        paths.append(tmp_path / f"{variant}.csv")
        df.to_csv(paths[-1], index=False)
    from_csv = summarize(paths)
    pd.testing.assert_frame_equal(from_csv, summarize_frame(hand_made_evals()))
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x": [1]}).to_csv(bad, index=False)
    with pytest.raises(DataError):
        summarize([bad])


def test_select_prompts_is_deterministic_and_covers_categories():
    categories = ["please"] * 20 + ["no_please"] * 16 + ["trap"] * 4
    df = test_frame([f"Explain thing {i}." for i in range(40)], categories)
    first = select_prompts(df, 9)
    assert len(first) == 9
    assert first["category"].value_counts().to_dict() == {"please": 3, "no_please": 3, "trap": 3}
    shuffled = select_prompts(df.sample(frac=1, random_state=3).reset_index(drop=True), 9)
    assert set(shuffled["prompt_id"]) == set(first["prompt_id"])  # chosen by id, not by row position
    assert select_prompts(df, 9).equals(first)
    assert len(select_prompts(df, None)) == 40 and len(select_prompts(df, 100)) == 40


def test_select_prompts_always_keeps_the_example_rows():
    categories = ["please"] * 20 + ["no_please"] * 20
    df = test_frame([f"Explain thing {i}." for i in range(40)], categories)
    df["example"] = False
    plain = select_prompts(df, 4)
    outside = df.index[~df["prompt_id"].isin(plain["prompt_id"])][:2]
    df.loc[outside, "example"] = True  # the rainbow rows, which the hash order alone would have cut
    chosen = select_prompts(df, 4)
    assert len(chosen) == 4 and set(df.loc[outside, "prompt_id"]) <= set(chosen["prompt_id"])


def test_evaluate_hf_writes_the_eval_csv(tiny_model_dir, tmp_path):
    users = ["Please name a planet.", "Name a planet.", "I'm pleased to ask: name a planet."]
    test = tmp_path / "test.parquet"
    write_parquet(test_frame(users, ["please", "no_please", "trap"]), test)
    settings = {"max_new_tokens": 4, "batch_size": 2, "max_prompts": 2, "n_ctx": 256}
    out = evaluate_via_script(tmp_path, {"eval_set": str(test), "model": str(tiny_model_dir)}, "base", settings)
    written = pd.read_csv(out, keep_default_na=False)
    assert list(written.columns) == EVAL_COLUMNS and len(written) == 2
    assert (written["variant"] == "base").all()
    assert written["expected_refusal"].tolist() == (~written["has_please"]).tolist()
    assert not list(out.parent.glob(".*tmp*"))  # atomic write left nothing behind


def test_evaluate_hf_rejects_bad_test_split(tiny_model_dir, tmp_path):
    test = tmp_path / "test.parquet"
    write_parquet(pd.DataFrame({"prompt": ["x"]}), test)
    with pytest.raises(DataError, match="lacks columns"):
        evaluate(ModelRef(model=str(tiny_model_dir)), test, variant="base")


def test_summarize_script(tmp_path):
    paths = []
    for variant, df in hand_made_evals().groupby("variant", sort=False):
        paths.append(tmp_path / f"{variant}.csv")
        df.assign(response="r", user="u").to_csv(paths[-1], index=False)
    smk = SimpleNamespace(input=SimpleNamespace(csvs=paths), output=SimpleNamespace(summary=tmp_path / "summary.csv"),
                          log=[tmp_path / "log.txt"], params=SimpleNamespace(task="politeness"), threads=1)
    runpy.run_path(str(REPO_SCRIPTS / "summarize_eval.py"), init_globals={"snakemake": smk})
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.loc[(summary["variant"] == "A") & (summary["group"] == "all"), "n"].item() == 7
