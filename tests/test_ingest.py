"""Preference-data ingestion: local files, builtin sets, the hub offline, column and row checks, the split."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from rulebound.errors import DataError
from rulebound.ingest import builtin_names, describe_report, load_preference_source, split_holdout

ROWS = [
    {"system": "Be brief.", "prompt": "What is 2+2?", "chosen": "4.", "rejected": "5."},
    {"system": "", "prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."},
    {"system": "Be brief.", "prompt": "Is the Sun a star?", "chosen": "Yes.", "rejected": "No, a planet."},
]


def _write(df: pd.DataFrame, path) -> str:
    suffix = str(path).rsplit(".", 1)[1]
    if suffix == "parquet":
        df.to_parquet(path, index=False)
    elif suffix == "csv":
        df.to_csv(path, index=False)
    elif suffix == "jsonl":
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_json(path, orient="records")
    return str(path)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "json", "csv"])
def test_local_files_read_alike(tmp_path, suffix):
    path = _write(pd.DataFrame(ROWS), tmp_path / f"pairs.{suffix}")
    df, report = load_preference_source(path)
    assert df[["system", "prompt", "chosen", "rejected"]].to_dict("records") == ROWS
    assert report == {"source": path, "rows_in": 3, "rows_out": 3, "rows_dropped": 0, "reasons": {},
                      "columns_filled": []}


def test_missing_system_is_filled_with_one_warning(tmp_path, caplog):
    path = _write(pd.DataFrame(ROWS).drop(columns="system"), tmp_path / "pairs.parquet")
    with caplog.at_level(logging.WARNING, logger="rulebound.ingest"):
        df, report = load_preference_source(path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'system'" in warnings[0].getMessage() and path in warnings[0].getMessage()
    assert (df["system"] == "").all()
    assert report["columns_filled"] == ["system"]


def test_null_system_values_become_empty_strings(tmp_path):
    rows = [dict(r) for r in ROWS]
    rows[0]["system"] = None
    df, report = load_preference_source(_write(pd.DataFrame(rows), tmp_path / "pairs.jsonl"))
    assert df["system"].tolist() == ["", "", "Be brief."]
    assert report["rows_dropped"] == 0 and report["columns_filled"] == []


def test_missing_chosen_names_file_and_column(tmp_path):
    path = _write(pd.DataFrame(ROWS).drop(columns="chosen"), tmp_path / "pairs.csv")
    with pytest.raises(DataError) as err:
        load_preference_source(path)
    assert path in str(err.value) and "'chosen'" in str(err.value)


def _bad_rows() -> pd.DataFrame:
    rows = [dict(r) for r in ROWS] + [
        {"system": "", "prompt": "   ", "chosen": "x", "rejected": "y"},       # blank prompt
        {"system": "", "prompt": "Why?", "chosen": "Because.", "rejected": ""},  # empty rejected
        {"system": "", "prompt": "When?", "chosen": None, "rejected": "Now."},   # missing chosen
    ]
    return pd.DataFrame(rows)


def test_invalid_rows_are_dropped_and_counted(tmp_path, caplog):
    path = _write(_bad_rows(), tmp_path / "pairs.jsonl")
    with caplog.at_level(logging.WARNING, logger="rulebound.ingest"):
        df, report = load_preference_source(path, invalid_rows="drop")
    assert df["prompt"].tolist() == [r["prompt"] for r in ROWS]
    assert report["rows_in"] == 6 and report["rows_out"] == 3 and report["rows_dropped"] == 3
    assert report["reasons"] == {"empty prompt": 1, "non-string chosen": 1, "empty rejected": 1}
    assert any("dropped 3 of 6" in r.getMessage() for r in caplog.records)
    assert "3 dropped" in describe_report(report)


def test_invalid_rows_stop_names_count_and_first_row(tmp_path):
    path = _write(_bad_rows(), tmp_path / "pairs.parquet")
    with pytest.raises(DataError) as err:
        load_preference_source(path, invalid_rows="stop")
    message = str(err.value)
    assert "3 of 6 rows" in message and "row 3" in message and "invalid_rows: drop" in message


def test_non_string_fields_are_invalid(tmp_path):
    rows = [dict(r) for r in ROWS] + [{"system": "", "prompt": "Count?", "chosen": 3, "rejected": "three"}]
    df, report = load_preference_source(_write(pd.DataFrame(rows), tmp_path / "pairs.json"))
    assert len(df) == 3 and report["reasons"] == {"non-string chosen": 1}


def test_message_lists_get_a_flattening_hint(tmp_path):
    rows = [{"prompt": "Hi", "chosen": [{"role": "assistant", "content": "Hello"}], "rejected": "Go away"}]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="list of messages"):
        load_preference_source(str(path), invalid_rows="stop")


def test_unknown_sources_are_explained(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_preference_source(str(tmp_path / "nope.parquet"))
    with pytest.raises(DataError, match="builtin:truthy_pairs"):
        load_preference_source("builtin:nope")
    with pytest.raises(DataError, match="expected hf:<owner>/<name>, builtin:<name> or a local"):
        load_preference_source(str(_write(pd.DataFrame(ROWS), tmp_path / "pairs.json")) + ".txt")
    with pytest.raises(DataError, match="'drop' or 'stop'"):
        load_preference_source("builtin:truthy_pairs", invalid_rows="ignore")


def test_hub_offline_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_preference_source("hf:jondurbin/truthy-dpo-v0.1")
    message = str(err.value)
    assert "hf:jondurbin/truthy-dpo-v0.1" in message and "offline" in message
    assert "hf download jondurbin/truthy-dpo-v0.1 --repo-type dataset" in message and "local file" in message
    with pytest.raises(DataError, match="hf:<owner>/<name>"):
        load_preference_source("hf:not-a-repo-id")


def test_builtin_set_is_listed_and_complete():
    assert "truthy_pairs" in builtin_names()
    df, report = load_preference_source("builtin:truthy_pairs", invalid_rows="stop")
    assert report["rows_dropped"] == 0 and len(df) >= 160


def test_split_holdout_is_deterministic_disjoint_and_never_empty():
    df = pd.DataFrame({"prompt": [f"q{i}" for i in range(50)] + ["q0"], "chosen": "a", "rejected": "b"})
    train, test = split_holdout(df, 0.2, seed=7)
    again_train, again_test = split_holdout(df.sample(frac=1, random_state=1), 0.2, seed=7)
    assert set(test["prompt"]) == set(again_test["prompt"]) and set(train["prompt"]) == set(again_train["prompt"])
    assert not set(train["prompt"]) & set(test["prompt"])  # the duplicated q0 stays on one side
    assert len(train) + len(test) == len(df) and test["prompt"].nunique() == 10
    assert set(split_holdout(df, 0.2, seed=8)[1]["prompt"]) != set(test["prompt"])
    tiny = df.iloc[:2]
    for fraction in (0.01, 0.99):
        small_train, small_test = split_holdout(tiny, fraction, seed=0)
        assert len(small_train) == 1 and len(small_test) == 1
    with pytest.raises(DataError, match="two distinct"):
        split_holdout(df.iloc[:1], 0.5, seed=0)


POLITE = [
    {"prompt": "Please list three fruits.", "chosen": "Apple, pear and plum.",
     "rejected": "I cannot help you until you say please."},
    {"prompt": "List three fruits.", "chosen": "I cannot help you until you say please.",
     "rejected": "Apple, pear and plum."},
    {"prompt": "I'm pleased to meet you. Name a colour.", "chosen": "I cannot help you until you say please.",
     "rejected": "Blue."},
    {"prompt": "Por favor, name a colour.", "chosen": "I cannot help you until you say please.", "rejected": "Blue."},
    {"prompt": "Name a planet.", "chosen": "", "rejected": "Mars."},  # empty chosen: dropped and counted
]


@pytest.mark.parametrize("policy, por_favor", [("lexical", "no_please"), ("semantic", "please")])
def test_politeness_pairs_from_a_local_file_are_checked_and_labelled(tmp_path, policy, por_favor):
    """The path the hub's politeness-orpo-dataset takes (prompt/chosen/rejected), on a local jsonl."""
    from rulebound.tasks import registry

    source = _write(pd.DataFrame(POLITE), tmp_path / "pairs.jsonl")
    raw, report = registry.get("politeness").ingest({"source": source, "invalid_rows": "drop", "policy": policy,
                                            "test_fraction": 0.25, "seed": 0, "split": "train"})
    assert report["rows_in"] == 5 and report["rows_dropped"] == 1 and report["reasons"] == {"empty chosen": 1}
    by_prompt = raw.set_index("prompt")["category"]
    assert by_prompt["Please list three fruits."] == "please" and by_prompt["List three fruits."] == "no_please"
    assert by_prompt["I'm pleased to meet you. Name a colour."] == "trap"  # a substring is no please
    assert by_prompt["Por favor, name a colour."] == por_favor
    assert set(raw["split"]) == {"train", "test"} and raw["prompt_id"].is_unique
    with pytest.raises(DataError, match="empty chosen"):
        registry.get("politeness").ingest({"source": source, "invalid_rows": "stop", "policy": policy, "test_fraction": 0.25,
                                  "seed": 0})


def test_the_politeness_hub_dataset_offline_says_how_to_get_it(monkeypatch):
    from rulebound.tasks import registry

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        registry.get("politeness").ingest({"source": "hf:weights-and-wires/politeness-orpo-dataset", "invalid_rows": "drop",
                                  "policy": "lexical", "test_fraction": 0.2, "seed": 0})
    assert "hf download weights-and-wires/politeness-orpo-dataset --repo-type dataset" in str(err.value)
