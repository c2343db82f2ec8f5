"""Lipogram data and evaluation glue: disjoint prompt splits, the SFT set's sources, the method x metric summary."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rulebound.errors import DataError
from rulebound.tasks.lipogram.data import build_prompt_splits, build_sft_rows, sft_card
from rulebound.tasks.lipogram.evaluate import conversations, summarize_lipogram_csvs


def test_prompt_splits_are_disjoint_seeded_and_keep_the_seed_prompts_held_out():
    train, held = build_prompt_splits(seed=3, train_prompts=50)
    again, _ = build_prompt_splits(seed=3, train_prompts=50)
    assert len(train) == 50 and train.equals(again)
    assert {"Explain gravity.", "Describe a dog.", "What is a car?"} <= set(held["prompt"])
    assert not set(train["prompt"]) & set(held["prompt"])


def test_sft_rows_keep_only_lipograms_and_never_a_held_out_prompt():
    answers = pd.DataFrame({"prompt": ["Talk about cats.", "Talk about dogs.", "Describe a dog.", "Say hi."],
                            "answer": ["A cat is a small furry animal that purrs.",  # e-free, kept
                                       "The dog barks.",  # has e: dropped
                                       "A dog is a loyal animal with a warm coat.",  # held-out prompt: dropped
                                       "Hi"]})  # lazy: dropped
    sft, stats = build_sft_rows(answers, eval_prompts=["Describe a dog."], shipped_qa=False, seed=0)
    assert list(sft["completion"]) == ["A cat is a small furry animal that purrs."]
    assert json.loads(sft["prompt"].iloc[0]) == [{"role": "user", "content": "Talk about cats."}]
    assert stats["constrained decoding"]["kept"] == 2 and stats["constrained decoding"]["lazy"] == 1


def test_shipped_qa_joins_and_the_card_counts_sources():
    answers = pd.DataFrame({"prompt": ["Talk about cats."], "answer": ["A cat is a small furry animal."]})
    sft, stats = build_sft_rows(answers, eval_prompts=[], shipped_qa=True, seed=0)
    assert not sft["completion"].str.contains("[eE]").any()
    assert set(sft["source"]) == {"constrained decoding", "rulebound e-free Q/A"}
    card = sft_card(sft, stats, experiment="lipogram", letter="e", settings={"seed": 0})
    assert f"{len(sft)} prompt-completion rows" in card and "rulebound e-free Q/A" in card


def test_dialogues_without_an_assistant_turn_stop(tmp_path):
    path = tmp_path / "dialogues.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    answers = pd.DataFrame({"prompt": ["Talk about cats."], "answer": ["A cat is a small furry animal."]})
    with pytest.raises(DataError, match="assistant"):
        build_sft_rows(answers, eval_prompts=[], shipped_qa=False, source=str(path))


def test_hub_dialogues_load_the_configured_split_and_filter_the_configured_letter(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(repo_id, split):
        calls.append((repo_id, split))
        return datasets.Dataset.from_list([
            {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hello there, pal."}]},
            {"messages": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "A plum, maybe."}]},
        ])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    answers = pd.DataFrame({"prompt": ["Talk about cats."], "answer": ["A cat is a small furry animal."]})
    sft, stats = build_sft_rows(answers, eval_prompts=[], letter="o", shipped_qa=False,
                                source="hf:owner/dialogues", split="train_sft", seed=0)
    assert calls == [("owner/dialogues", "train_sft")]
    hub = sft[sft["source"] == "hf:owner/dialogues"]
    # banned letter o: "Hello there, pal." goes, "A plum, maybe." stays (under the default e it would go)
    assert hub["completion"].tolist() == ["A plum, maybe."]
    assert not sft["completion"].str.contains("o").any()


def test_nothing_left_stops_with_what_to_change():
    answers = pd.DataFrame({"prompt": ["Talk."], "answer": ["The end."]})
    with pytest.raises(DataError, match="distill_prompts"):
        build_sft_rows(answers, eval_prompts=[], shipped_qa=False)


def test_prompt_variant_gets_the_system_prompt_and_others_do_not():
    assert conversations(["Hi."], "prompt")[0][0]["role"] == "system"
    assert conversations(["Hi."], "base") == [[{"role": "user", "content": "Hi."}]]


def test_summary_is_one_row_per_variant_in_order(tmp_path):
    paths = []
    for variant, answers in (("base", ["The dog is here.", "Ok"]), ("grpo", ["Dog", "A cat sat."])):
        df = pd.DataFrame({"variant": variant, "prompt_id": [0, 1], "prompt": ["Describe a dog.", "Hi."],
                           "response": answers, "e_count": [s.lower().count("e") for s in answers],
                           "e_free": ["e" not in s.lower() for s in answers], "e_per_100_letters": [1.0, 0.0],
                           "words": [len(s.split()) for s in answers], "lazy": [len(s.split()) < 3 for s in answers],
                           "degenerate": [False, False], "relevance": [0.8, 0.2]})
        paths.append(tmp_path / f"{variant}.csv")
        df.to_csv(paths[-1], index=False)
    summary = summarize_lipogram_csvs(paths)
    assert list(summary["variant"]) == ["base", "grpo"]
    grpo = summary.set_index("variant").loc["grpo"]
    assert grpo["e_free_rate"] == 1.0 and grpo["lazy_rate"] == 0.5 and grpo["dog"] == "Dog"
    assert summary.set_index("variant").loc["base", "e_free_rate"] == 0.5
