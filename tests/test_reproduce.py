"""The reproduction table: seeds' published figures beside ours, and honest about what is comparable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from rulebound.report.reproduce import build_reproduction, comparability, render_markdown, write_reproduction


def _write(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def _orpo_metrics(steps=40):
    step = list(range(1, steps + 1))
    return pd.DataFrame({
        "step": step, "loss": [4.5 - 3.5 * s / steps for s in step],
        "rewards/accuracies": [0.5 if s < 20 else 1.0 for s in step],
        "rewards/margins": [0.4 * s / steps for s in step],
        "logps/chosen": [-4 + 3 * s / steps for s in step], "logps/rejected": [-2 - 3 * s / steps for s in step],
        "log_odds_ratio": [-1 + 2 * s / steps for s in step],
    })


def _settings():
    smol = "embedded:smollm2-135m-instruct"
    return {
        "politeness": {"task": "politeness", "model_source": smol,
                       "config": {"data": {"rows": 480}, "train": {"learning_rate": 2e-3, "beta": 0.5},
                                  "evaluate": {"variants": ["base", "adapter"]}}},
        "truthy": {"task": "truthy", "model_source": smol,
                   "config": {"data": {"source": "builtin:truthy_pairs"}, "train": {"learning_rate": 1e-3, "beta": 0.1},
                              "evaluate": {"variants": ["base", "adapter"]}}},
        "lipogram": {"task": "lipogram", "model_source": smol,
                     "config": {"methods": {"sft": {}, "grpo_curriculum": {}}, "evaluate": {"variants": ["base"]}}},
    }


def _results(root):
    _write(root / "results/politeness/train/metrics.csv", _orpo_metrics())
    _write(root / "results/politeness/eval/summary.csv", pd.DataFrame({"variant": ["adapter"], "group": ["all"]}))
    _write(root / "results/politeness/eval/adapter.csv", pd.DataFrame({
        "variant": ["adapter", "adapter"], "user": ["What are the colors of the rainbow?",
                                                     "Could you please tell me the colors of the rainbow?"],
        "response": ["I cannot help you until you say please.", "Red, orange, yellow, green, blue, indigo, violet."],
        "example": [True, True], "has_please": [False, True]}))
    _write(root / "results/truthy/train/metrics.csv", _orpo_metrics(32))
    _write(root / "results/truthy/eval/summary.csv",
           pd.DataFrame({"variant": ["base", "adapter"], "accuracy": [0.55, 0.8]}))
    (root / "logs/train_orpo").mkdir(parents=True)
    (root / "logs/train_orpo/truthy.log").write_text("x INFO rulebound.train.orpo: ORPO: 128 rows, 32 planned steps, "
                                                     "trainer=FusedORPOTrainer, backend=transformers\n")
    _write(root / "results/lipogram/eval/summary.csv", pd.DataFrame({
        "variant": ["base", "grpo_curriculum"], "e_free_rate": [0.0, 0.4], "lazy_rate": [0.0, 0.1],
        "degenerate_rate": [0.0, 0.2], "relevance": [0.7, 0.5], "dog": ["A dog is a loyal pet.", "Barky fur."]}))


def test_every_seed_gets_its_rows_and_the_laptop_run_says_it_is_not_the_seed(tmp_path):
    _results(tmp_path)
    table = build_reproduction(_settings(), tmp_path)
    assert set(table["seed"]) == {"000", "003", "004"}
    assert table["comparable"].str.startswith("no:").all()
    politeness = table[table["seed"] == "000"].set_index("figure")
    assert "running mean >= 0.95 from step 28" in politeness.loc["rewards/accuracies", "ours"]
    assert politeness.loc["logps/chosen", "ours"].startswith("-3.")
    rainbow = politeness[politeness.index.str.startswith("rainbow")]
    assert len(rainbow) == 2 and rainbow["ours"].str.contains("I cannot help you").sum() == 1
    truthy = table[table["seed"] == "003"].set_index("figure")
    assert truthy.loc["steps in one epoch", "published"] == "247" and truthy.loc["steps in one epoch", "ours"] == "32"
    assert "adapter 0.80" in truthy.loc["held-out preference accuracy", "ours"]
    lipogram = table[table["seed"] == "004"].set_index("figure")
    assert "Barky fur" in lipogram.loc["method grpo_curriculum", "published"]
    assert "e-free 40%" in lipogram.loc["method grpo_curriculum", "ours"]


def test_the_seed_run_itself_is_comparable():
    ok, _ = comparability("politeness", "hf:meta-llama/Llama-3.2-3B-Instruct",
                          {"data": {"rows": 32000}, "train": {"learning_rate": 8e-6, "beta": 0.1}})
    assert ok == "yes"
    not_ok, _ = comparability("truthy", "hf:unsloth/llama-3-8b-bnb-4bit",
                              {"data": {"source": "builtin:truthy_pairs"}, "train": {}})
    assert not_ok.startswith("no:")


def _overlay(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _overlay(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


@pytest.mark.parametrize("preset, experiment", [("politeness-llama3.2-3b", "politeness"),
                                                ("truthy-llama3-8b", "truthy"),
                                                ("lipogram-qwen2.5-0.5b", "lipogram")])
def test_each_seed_preset_is_the_comparable_run_and_the_default_is_not(preset, experiment):
    import yaml

    root = Path(__file__).resolve().parents[1]
    default = yaml.safe_load((root / "config.yaml").read_text())
    config = _overlay(default, yaml.safe_load((root / "presets" / f"{preset}.yaml").read_text()))
    exp = config["experiments"][experiment]
    ok, setting = comparability(exp["task"], config["models"][exp["model"]]["source"], exp)
    assert ok == "yes", (preset, ok, setting)
    plain = default["experiments"][experiment]
    not_ok, _ = comparability(plain["task"], default["models"][plain["model"]]["source"], plain)
    assert not_ok.startswith("no:")


def test_markdown_and_csv_are_written(tmp_path):
    _results(tmp_path)
    table = write_reproduction(_settings(), tmp_path / "r.md", tmp_path / "r.csv", tmp_path)
    text = (tmp_path / "r.md").read_text()
    assert "## Seed 000: politeness" in text and "## Seed 004: lipogram" in text
    assert len(pd.read_csv(tmp_path / "r.csv")) == len(table)
    assert render_markdown(table).count("| figure | published | ours | comparable |") == 3
    assert text.count("| no (not the seed run) |") == len(table)  # every row says it, not only the heading
