"""Presets: the seed's Llama 3.2 3B run validates and plans on the Slurm A100 profile (dry run: no hub, no GPU)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from rulebound.config import validate_config

from conftest import REPO

PRESET = REPO / "presets" / "politeness-llama3.2-3b.yaml"
SLURM_ENV = {"RULEBOUND_SLURM_ACCOUNT": "acct42", "RULEBOUND_GPU_PARTITION": "a100q", "RULEBOUND_CPU_PARTITION": "cpuq"}
GPU_RULES = {"distill_answers", "train_orpo", "merge_adapter", "evaluate_hf", "distill_lipograms", "train_sft",
             "train_grpo"}
# rules/common.smk runs the device check at parse time, where Snakemake 9 does not know yet that this is a dry
# run (workflow.dryrun is False until the executor is set up), so backend: unsloth fails a dry run on a CPU box.


def merged_config(*overlays: Path) -> dict:
    """config.yaml with the overlays merged in, as Snakemake's --configfile does (mappings merge, rest replaces)."""
    def merge(base, extra):
        for key, value in extra.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
                else value
        return base

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        config = merge(config, yaml.safe_load(overlay.read_text()))
    return validate_config(config, REPO / "schemas" / "config.schema.yaml")


# Named explicitly so the plan includes them whether or not all_targets() lists them yet.
RELEASE_TARGETS = ["politeness", "results/politeness/gguf/politeness-lora-F16.Modelfile",
                   "results/politeness/gguf/politeness-Q4_K_M.Modelfile", "results/politeness/eval/fidelity.csv",
                   "results/politeness/publish"]


def dry_run(workdir: Path, *configfiles: Path, targets=tuple(RELEASE_TARGETS)
            ) -> tuple[subprocess.CompletedProcess, dict[str, list[str]]]:
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--workflow-profile", str(REPO / "profiles" / "slurm-a100"), *targets,
           "--configfile", *map(str, configfiles)]
    env = {**os.environ, **SLURM_ENV, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env=env, timeout=120)
    jobs: dict[str, list[str]] = {}
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", proc.stdout, re.M):
        jobs.setdefault(rule, []).append(body)
    return proc, jobs


def _check_gpu_resources(jobs: dict[str, list[str]]) -> None:
    for rule, bodies in jobs.items():
        for body in bodies:
            gpu = re.search(r"resources: .*\bgpu=1\b", body) is not None
            assert gpu == (rule in GPU_RULES), (rule, body)
            if rule in GPU_RULES:
                assert "slurm_partition=a100q" in body and "gpu_model=a100" in body


def test_preset_sets_the_seed_run():
    config = merged_config(PRESET)
    assert config["models"]["llama-3.2-3b-instruct"]["source"] == "hf:meta-llama/Llama-3.2-3B-Instruct"
    exp = config["experiments"]["politeness"]
    train = exp["train"]
    assert exp["model"] == "llama-3.2-3b-instruct" and exp["data"]["rows"] == 32000
    assert (train["max_steps"], train["epochs"], train["learning_rate"]) == (-1, 1, 8e-6)
    assert train["lr_scheduler_type"] == "linear" and train["warmup_ratio"] > 0
    assert train["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert (train["backend"], train["precision"], train["load_in_4bit"]) == ("unsloth", "bf16", False)
    assert train["batch_size"] * train["gradient_accumulation_steps"] >= 8
    assert exp["publish"] == {"repo_id": None, "private": True, "license": "apache-2.0"}  # schema defaults


def test_preset_plans_on_the_a100_profile(tmp_path):
    # backend auto keeps this test independent of where the device check runs (see the next test)
    auto = tmp_path / "auto.yaml"
    auto.write_text("experiments:\n  politeness:\n    train:\n      backend: auto\n")
    proc, jobs = dry_run(tmp_path, PRESET, auto)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"prepare_model", "build_prompts", "distill_answers", "format_data", "train_orpo", "merge_adapter",
            "convert_gguf", "quantize_gguf", "convert_lora_gguf", "evaluate_hf", "evaluate_gguf", "convert_base_gguf",
            "ollama_modelfile", "quant_fidelity", "publish_folder"} <= set(jobs), sorted(jobs)
    assert len(jobs["prepare_model"]) == 1 and all("model=llama-3.2-3b-instruct" in b for b in jobs["prepare_model"])
    assert all("model=llama-3.2-3b-instruct" in b for b in jobs["convert_base_gguf"])
    assert "smollm2" not in proc.stdout  # the default model is defined but nothing uses it
    _check_gpu_resources(jobs)


def test_unsloth_preset_dry_run_needs_no_gpu(tmp_path):
    proc, jobs = dry_run(tmp_path, PRESET)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train_orpo" in jobs


def test_truthy_preset_is_the_seed_run_and_plans_on_the_a100_profile(tmp_path):
    preset = REPO / "presets" / "truthy-llama3-8b.yaml"
    exp = merged_config(preset)["experiments"]["truthy"]
    train = exp["train"]
    assert exp["data"]["source"] == "hf:jondurbin/truthy-dpo-v0.1"
    assert (train["load_in_4bit"], train["optim"], train["lr_scheduler_type"], train["beta"]) == \
        (True, "paged_adamw_8bit", "cosine", 0.1)
    assert (train["batch_size"], train["gradient_accumulation_steps"], train["epochs"]) == (2, 2, 1)
    assert (train["max_prompt_length"], train["max_length"]) == (512, 1024)
    assert (train["lora"]["r"], train["lora"]["alpha"], train["lora"]["seed"]) == (16, 16, 3407)
    assert train["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                               "down_proj"]
    auto = tmp_path / "auto.yaml"  # as above: the Unsloth device check is the next test's business
    auto.write_text("experiments:\n  truthy:\n    train:\n      backend: auto\n")
    proc, jobs = dry_run(tmp_path, preset, auto, targets=("truthy",))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {"prepare_model", "ingest_pairs", "format_data", "train_orpo", "merge_adapter", "convert_gguf",
            "quantize_gguf", "evaluate_hf", "evaluate_gguf"} <= set(jobs), sorted(jobs)
    assert all("model=llama-3-8b" in b for b in jobs["prepare_model"])
    _check_gpu_resources(jobs)


def test_lipogram_preset_plans_the_ladder_on_the_a100_profile(tmp_path):
    preset = REPO / "presets" / "lipogram-qwen2.5-0.5b.yaml"
    exp = merged_config(preset)["experiments"]["lipogram"]
    assert exp["data"]["source"].startswith("hf:") and exp["data"]["split"] == "train_sft"
    assert set(exp["methods"]) == {"sft", "grpo", "grpo_length", "grpo_curriculum"}
    auto = tmp_path / "auto.yaml"
    auto.write_text("experiments:\n  lipogram:\n    methods:\n" + "".join(
        f"      {m}: {{backend: auto}}\n" for m in exp["methods"]))
    proc, jobs = dry_run(tmp_path, preset, auto, targets=("lipogram",))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(jobs["train_grpo"]) == 3 and len(jobs["train_sft"]) == 1, sorted(jobs)
    assert all("model=qwen2.5-0.5b-instruct" in b for b in jobs["prepare_model"])
    _check_gpu_resources(jobs)
