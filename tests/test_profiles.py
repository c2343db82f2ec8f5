"""Executor profiles: the GPU rules, and only they, carry GPU resources (dry runs, no cluster needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = {"distill_answers", "train_orpo", "merge_adapter", "evaluate_hf", "distill_lipograms", "train_sft",
             "train_grpo"}  # and distill_constitution, in presets/constitution.yaml's experiment
SLURM_ENV = {"RULEBOUND_SLURM_ACCOUNT": "acct42", "RULEBOUND_GPU_PARTITION": "a100q", "RULEBOUND_CPU_PARTITION": "cpuq"}


def dry_run(workdir: Path, *args: str) -> dict[str, list[str]]:
    """Rule name -> resource strings of each planned job."""
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env={**os.environ, **SLURM_ENV})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs: dict[str, list[str]] = {}
    for rule, resources in re.findall(r"^(?:local)?rule (\w+):\n(?:.*\n)*?\s+resources: (.*)$", proc.stdout, re.M):
        jobs.setdefault(rule, []).append(resources)
    assert jobs, proc.stdout[-2000:]
    return jobs


def gpu_of(resources: str) -> str | None:
    match = re.search(r"(?:^|, )gpu=(\w+)", resources)
    return match.group(1) if match else None


def test_slurm_profile_sends_only_gpu_rules_to_a100(tmp_path):
    jobs = dry_run(tmp_path, "--workflow-profile", str(REPO / "profiles" / "slurm-a100"))
    assert GPU_RULES <= set(jobs)
    for rule, all_resources in jobs.items():
        for resources in all_resources:
            if rule in GPU_RULES:
                assert gpu_of(resources) == "1" and "gpu_model=a100" in resources, (rule, resources)
                assert "slurm_partition=a100q" in resources and "slurm_account=acct42" in resources
            else:
                assert gpu_of(resources) is None and "gpu_model" not in resources, (rule, resources)
                assert "slurm_partition=cpuq" in resources, (rule, resources)


def test_slurm_runtime_grows_with_attempts():
    text = (REPO / "profiles" / "slurm-a100" / "config.yaml").read_text()
    assert re.search(r"^retries: [1-9]", text, re.M)
    assert 'runtime: "240 * attempt"' in text


def test_local_gpu_profile_limits_gpu_jobs(tmp_path):
    jobs = dry_run(tmp_path, "--workflow-profile", str(REPO / "profiles" / "local-gpu"))
    gpu_rules = {rule for rule, res in jobs.items() if any(gpu_of(r) for r in res)}
    assert gpu_rules == GPU_RULES & set(jobs)
    assert "gpu: 1" in (REPO / "profiles" / "local-gpu" / "config.yaml").read_text()


def test_slurm_executor_plugin_plans(tmp_path):
    """The plugin itself accepts the plan; GPU resources come from the rules, not the profile."""
    jobs = dry_run(tmp_path, "--executor", "slurm", "--jobs", "4", "--default-resources", "slurm_account=acct42")
    for rule, all_resources in jobs.items():
        assert all((gpu_of(r) == "1") == (rule in GPU_RULES) for r in all_resources), rule


def planned_threads(workdir: Path, *args: str) -> dict[str, set[int]]:
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "32", *args, "results/truthy/adapter"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, env={**os.environ, **SLURM_ENV})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    threads: dict[str, set[int]] = {}
    blocks = re.split(r"^(?:local)?rule (\w+):$", proc.stdout, flags=re.M)  # [head, rule, body, rule, body...]
    for rule, body in zip(blocks[1::2], blocks[2::2]):
        found = re.search(r"^\s+threads: (\d+)$", body, re.M)
        threads.setdefault(rule, set()).add(int(found.group(1)) if found else 1)
    return threads


def test_the_documented_profile_flag_keeps_the_profiles_threads(tmp_path):
    """--workflow-profile (what README and docs/ say) applies the GPU profile's set-threads; with --profile,
    Snakemake also loads profiles/default as the workflow profile and its 2 threads win."""
    ours = planned_threads(tmp_path, "--workflow-profile", str(REPO / "profiles" / "local-gpu"))
    assert ours["train_orpo"] == {4}, ours
    theirs = planned_threads(tmp_path, "--profile", str(REPO / "profiles" / "local-gpu"))
    assert theirs["train_orpo"] == {2}, theirs  # why the docs never say --profile
    docs = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "presets").glob("*.yaml"),
            *(REPO / "profiles").glob("*/config.yaml")]
    for path in docs:
        assert not re.search(r"--profile profiles/", path.read_text()), f"{path} says --profile: use --workflow-profile"
