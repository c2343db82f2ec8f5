"""The constitution experiment in Snakemake: the default plans through every stage; a tiny run end to end."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
DEFAULT["experiments"].update(yaml.safe_load((REPO / "presets" / "constitution.yaml").read_text())["experiments"])
SMOKE = {"experiments": {"constitution": yaml.safe_load(
    (Path(__file__).resolve().parent / "smoke.yaml").read_text())}}  # smoke-sized settings over the preset's


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir,
                          env=dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1"))


def write_config(workdir: Path, experiments: dict, models: dict | None = None) -> None:
    config = {"models": models or DEFAULT["models"], "llama_cpp": DEFAULT["llama_cpp"], "experiments": experiments}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


def test_the_default_experiment_dry_runs_through_every_stage(tmp_path):
    write_config(tmp_path, {"constitution": DEFAULT["experiments"]["constitution"]})
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert {"build_constitution_prompts", "distill_constitution", "build_constitution_pairs", "format_data",
            "train_orpo", "merge_adapter", "convert_gguf", "quantize_gguf", "evaluate_hf", "evaluate_gguf",
            "summarize_eval", "plot_report", "render_report", "publish_folder"} <= planned, sorted(planned)
    assert not planned & {"build_prompts", "distill_answers", "train_grpo", "constitution_grpo_prompts"}
    for variant in ("base", "adapter", "F16", "Q4_K_M"):
        assert f"results/constitution/eval/{variant}.csv" in proc.stdout


def test_a_grpo_run_on_the_checkers_plans_instead_of_orpo(tmp_path):
    exp = copy.deepcopy(DEFAULT["experiments"]["constitution"])
    exp["train"] = {"method": "grpo", "rewards": ["constitution"], "learning_rate": 1e-5, "batch_size": 2,
                    "num_generations": 2, "max_steps": 2}
    write_config(tmp_path, {"constitution": exp})
    proc = snakemake(tmp_path, "-n", "results/constitution/eval/adapter.csv")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert {"constitution_grpo_prompts", "train_grpo", "format_data"} <= planned and "train_orpo" not in planned


def test_a_bad_rule_stops_snakemake_before_any_job(tmp_path):
    exp = copy.deepcopy(DEFAULT["experiments"]["constitution"])
    exp["rules"][1]["checker"] = {"callable": "no_such_pkg.checks:polite"}
    write_config(tmp_path, {"constitution": exp})
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode != 0
    assert "experiments.constitution.rules[1] (please).checker.callable" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_a_tiny_constitution_runs_end_to_end(tmp_path, embedded_model_dir):
    """Smoke-sized settings on the embedded model (the tiny random one writes only empty answers to distil):
    data, training, export, every variant's evaluation."""
    exp = copy.deepcopy(DEFAULT["experiments"]["constitution"])
    for key, value in SMOKE["experiments"]["constitution"].items():
        exp[key] = {**exp.get(key, {}), **value} if isinstance(value, dict) else value
    exp["model"] = "smol"
    write_config(tmp_path, {"constitution": exp}, models={"smol": {"source": str(embedded_model_dir)}})
    target = "results/constitution/eval/summary.csv"
    proc = snakemake(tmp_path, target, "results/constitution/report/eval.png")
    logs = "\n".join(p.read_text()[-1500:] for p in sorted((tmp_path / "logs").rglob("*.log")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    raw = pd.read_parquet(tmp_path / "results/constitution/data/raw.parquet")
    assert {"none", "please", "no_volcanoes", "no_volcanoes+please"} <= set(raw["category"])
    summary = pd.read_csv(tmp_path / target)
    assert list(summary["variant"].drop_duplicates()) == ["base", "adapter", "Q4_K_M"]
    assert {"rule:please", "rule:no_volcanoes", "none", "all"} <= set(summary["group"])
    assert ((summary["ci_low"] <= summary["rate"]) & (summary["rate"] <= summary["ci_high"])).all()
    rules = json.loads((tmp_path / "results/constitution/data/rules.json").read_text())
    assert [r["name"] for r in rules] == ["no_volcanoes", "please"]
    assert (tmp_path / "benchmarks/distill_constitution/constitution.tsv").is_file()
