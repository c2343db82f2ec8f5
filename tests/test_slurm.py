"""The smoke pipeline on a real Slurm cluster (tests/slurm/cluster.py) through profiles/slurm-a100, as users run it.

The cluster builds ``SLURM_TARGETS``: the politeness experiment's summary (data, distillation, ORPO, merge, every
GGUF and its evaluation, HF and llama.cpp) and the lipogram's GRPO evaluation (its distillation, SFT and GRPO
from SFT): every GPU rule and the CPU rules that feed them. The rest of the smoke pipeline (truthy, the other
lipogram runs, conformance, the report) runs the same rules on other settings; it runs locally
(tests/test_pipeline.py): 471 s through Slurm instead of 692 s for the whole pipeline.

Only the account and the partitions come from the environment, as the profile says. The cluster's node
declares what the profile asks for (8 CPUs per GPU job, up to 192 GB, one A100 GRES on a dummy device), so the
profile runs unchanged; training takes its CPU path. Needs root on Linux: the test fails, never skips, when
the cluster cannot start.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

import pandas as pd
import pytest

from rulebound.errors import ConfigError
from rulebound.slurm import check_variables, unset_variables
from slurm.cluster import ACCOUNT, ClusterError, SlurmCluster
from smoke.pipeline import REPO, planned_rules, snakemake

pytestmark = pytest.mark.slow

PROFILE = REPO / "profiles" / "slurm-a100"
GPU_RULES = {"distill_answers", "train_orpo", "merge_adapter", "evaluate_hf", "distill_lipograms", "train_sft",
             "train_grpo"}
PROFILE_VARS = ("RULEBOUND_SLURM_ACCOUNT", "RULEBOUND_GPU_PARTITION", "RULEBOUND_CPU_PARTITION")
# Test-speed settings only (no resource changes): poll job states every few seconds instead of the plugin's
# 40 s start, and keep four jobs in flight on this small machine.
FAST = ("--jobs", "4", "--slurm-init-seconds-before-status-checks", "3")
SLURM_TARGETS = ("results/politeness/eval/summary.csv", "results/lipogram/eval/grpo.csv")
TIMINGS = Path(os.environ.get("RULEBOUND_SLURM_TIMINGS", "/tmp/rulebound-slurm-timings.csv"))


def record(name: str, seconds: float) -> None:
    """Measured figures, printed (-s shows them) and appended to a CSV that CI keeps."""
    print(f"\n[slurm timing] {name}: {seconds:.1f} s")
    new = not TIMINGS.exists()
    with TIMINGS.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["when", "what", "seconds"])
        writer.writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), name, f"{seconds:.1f}"])


@pytest.fixture(scope="module")
def cluster():
    cluster = SlurmCluster()
    try:
        cluster.start()
    except ClusterError as exc:
        pytest.fail(f"the test Slurm cluster did not start: {exc}", pytrace=False)
    for name, seconds in cluster.timings.items():
        record(f"cluster {name}", seconds)
    yield cluster
    cluster.stop()


def slurm_env(cluster: SlurmCluster, **overrides: str | None) -> dict[str, str]:
    env = {**cluster.env(), "RULEBOUND_SLURM_ACCOUNT": ACCOUNT, "RULEBOUND_GPU_PARTITION": "gpu",
           "RULEBOUND_CPU_PARTITION": "cpu"}
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def run_profile(workdir: Path, env: dict[str, str], *args: str, unset: tuple[str, ...] = (), check: bool = True):
    """snakemake --workflow-profile profiles/slurm-a100 with exactly `env` for the profile's variables.
    --workflow-profile as docs/cluster.md says: with --profile, Snakemake loads profiles/default on top of it."""
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    saved = {var: os.environ.pop(var) for var in PROFILE_VARS if var in os.environ}
    try:
        for var in unset:
            env.pop(var, None)
        return snakemake(workdir, "--workflow-profile", str(PROFILE), *FAST, *args, env=env, check=check)
    finally:
        os.environ.update(saved)


def sacct_jobs(cluster: SlurmCluster) -> list[dict[str, str]]:
    """Every allocation (not its steps) the cluster ran, with the rule from the plugin's job comment."""
    fields = ["JobID", "State", "Partition", "Account", "AllocTRES", "ReqTRES", "Comment", "ExitCode"]
    out = cluster.run("sacct", "-X", "-n", "-P", "-a", "--starttime=2000-01-01",
                      "-o", ",".join(fields)).stdout
    jobs = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line.strip()]
    for job in jobs:
        job["rule"] = re.sub(r"^rule_", "", job["Comment"]).split("_wildcards_")[0]
    return jobs


@pytest.fixture(scope="module")
def slurm_build(cluster, tmp_path_factory) -> Path:
    """The smoke pipeline's ``SLURM_TARGETS``, every job submitted to Slurm."""
    workdir = tmp_path_factory.mktemp("slurm-pipeline")
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    workdir.joinpath(".planned").write_text("\n".join(sorted(planned_rules(workdir, *SLURM_TARGETS))))
    began = time.monotonic()
    run_profile(workdir, slurm_env(cluster), *SLURM_TARGETS)
    record("smoke pipeline through Slurm", time.monotonic() - began)
    return workdir


def test_every_job_completed_on_its_partition(cluster, slurm_build):
    jobs = sacct_jobs(cluster)
    assert jobs, "sacct lists no jobs"
    planned = set((slurm_build / ".planned").read_text().split())
    assert set(j["rule"] for j in jobs) == planned, "every planned rule ran as a Slurm job, and only those"
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    not_completed = [(j["JobID"], j["rule"], j["State"], j["ExitCode"]) for j in jobs if j["State"] != "COMPLETED"]
    assert not not_completed, f"jobs that did not complete: {not_completed}"
    ran_gpu = GPU_RULES & set(by_rule)
    assert ran_gpu == GPU_RULES, f"the smoke config runs every GPU rule; sacct has only {sorted(ran_gpu)}"
    for job in jobs:
        assert job["Account"] == ACCOUNT, job
        if job["rule"] in GPU_RULES:
            assert job["Partition"] == "gpu", job
            assert "gres/gpu" in job["ReqTRES"] and "gres/gpu" in job["AllocTRES"], job
            assert "gres/gpu:a100=1" in job["AllocTRES"], job
        else:
            assert job["Partition"] == "cpu", job
            assert "gres/gpu" not in job["AllocTRES"], job


# Columns that measure the run rather than its result: wall-clock time differs between any two runs.
TIMING_COLUMNS = re.compile(r"(^|_)(time|runtime|seconds|elapsed|per_second)($|_)", re.I)


def csv_outputs(workdir: Path) -> list[Path]:
    return sorted(p.relative_to(workdir) for p in (workdir / "results").rglob("*.csv"))


def test_outputs_equal_a_local_run(smoke_run, slurm_build):
    """Every CSV the Slurm build wrote (evaluations, the summary, training metrics) equals the local smoke run's:
    same config, same seeds, same threads per job (Slurm jobs run the same rule code)."""
    ours = csv_outputs(slurm_build)
    local = set(csv_outputs(smoke_run))
    assert ours and set(ours) <= local, sorted(set(ours) - local)
    names = {str(p) for p in ours}
    assert {*SLURM_TARGETS, "results/politeness/train/metrics.csv", "results/lipogram/grpo/train/metrics.csv",
            "results/politeness/eval/Q4_K_M.csv"} <= names, sorted(names)
    for rel in ours:
        ours, theirs = pd.read_csv(slurm_build / rel), pd.read_csv(smoke_run / rel)
        timing = [c for c in ours.columns if TIMING_COLUMNS.search(c)]
        if rel.name == "conformance.csv":
            # the detail quotes greedy text, which llama.cpp's thread count (8 per job on the cluster profile,
            # 1 on the laptop's) can move by a token; which file passed which check must agree
            timing.append("detail")
        assert list(ours.columns) == list(theirs.columns), rel
        pd.testing.assert_frame_equal(ours.drop(columns=timing), theirs.drop(columns=timing), check_exact=False,
                                      rtol=1e-5, atol=1e-7, obj=str(rel))


def test_unset_variables_names_each_variable_and_its_resources():
    resources = [("slurm_account", "$RULEBOUND_SLURM_ACCOUNT"), ("slurm_partition", "${RULEBOUND_GPU_PARTITION}"),
                 ("slurm_partition", "cpu"), ("mem_mb", "8000 * attempt")]
    assert unset_variables(resources, environ={}) == {"RULEBOUND_SLURM_ACCOUNT": {"slurm_account"},
                                                      "RULEBOUND_GPU_PARTITION": {"slurm_partition"}}
    assert unset_variables(resources, environ={"RULEBOUND_SLURM_ACCOUNT": "", "RULEBOUND_GPU_PARTITION": "g"}) == {}
    with pytest.raises(ConfigError, match=r"not set: RULEBOUND_GPU_PARTITION \(resource slurm_partition\)"):
        check_variables(resources, environ={"RULEBOUND_SLURM_ACCOUNT": "a"})


# --- bad input: caught before the first submission ----------------------------------------------------


def assert_refused_before_any_job(cluster, proc, *needles: str, jobs_before: int) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text[-3000:]}"
    assert "Submitted batch job" not in text and "has been submitted with SLURM jobid" not in text
    assert len(sacct_jobs(cluster)) == jobs_before, "a job reached Slurm"


def test_unset_account_is_an_error_naming_the_variable(cluster, tmp_path):
    before = len(sacct_jobs(cluster))
    proc = run_profile(tmp_path, slurm_env(cluster), unset=("RULEBOUND_SLURM_ACCOUNT",), check=False)
    assert_refused_before_any_job(cluster, proc, "RULEBOUND_SLURM_ACCOUNT (resource slurm_account)",
                                  "export RULEBOUND_SLURM_ACCOUNT=<your account>", jobs_before=before)
    assert "not set: RULEBOUND_SLURM_ACCOUNT (resource slurm_account). Export" in proc.stderr  # only what is unset


def test_empty_account_plans_without_one(cluster, tmp_path):
    """A cluster without accounts: RULEBOUND_SLURM_ACCOUNT= (empty) submits without -A."""
    proc = run_profile(tmp_path, slurm_env(cluster, RULEBOUND_SLURM_ACCOUNT=""), "-n")
    assert re.search(r"slurm_account=(,|$)", proc.stdout, re.M), proc.stdout[-2000:]


def test_refused_account_is_one_clear_error(cluster, tmp_path):
    before = len(sacct_jobs(cluster))
    proc = run_profile(tmp_path, slurm_env(cluster, RULEBOUND_SLURM_ACCOUNT="no-such-account"), check=False)
    assert_refused_before_any_job(
        cluster, proc, "Slurm refuses account 'no-such-account': user root may submit only with root, rulebound",
        "Set RULEBOUND_SLURM_ACCOUNT to one of them", jobs_before=before)


def test_refused_partition_is_one_clear_error(cluster, tmp_path):
    before = len(sacct_jobs(cluster))
    proc = run_profile(tmp_path, slurm_env(cluster, RULEBOUND_GPU_PARTITION="a100q"), check=False)
    assert_refused_before_any_job(
        cluster, proc, "Slurm has no partition 'a100q'; this cluster's partitions are cpu, gpu",
        "Set RULEBOUND_GPU_PARTITION to one of them", jobs_before=before)


# --- a job over its time limit: retried by the profile, resumed from its checkpoint ---------------------------

# ORPO on the tiny random Llama (tests/test_checkpoints.py's run) long enough to outlive a one-minute limit
# with checkpoints well before it; the retry's limit is the profile's.
TIMELIMIT_STEPS = 3000
FIRST_ATTEMPT_RUNTIME = "1 if attempt == 1 else 240 * attempt"  # minutes; Slurm's smallest limit is 1 min


def overlay_profile(folder: Path) -> Path:
    """profiles/slurm-a100 unchanged but for train_orpo's first-attempt runtime: one minute."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    profile["set-resources"]["train_orpo"]["runtime"] = FIRST_ATTEMPT_RUNTIME
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def test_a_job_over_its_time_limit_is_retried_and_resumes(cluster, tmp_path, tiny_model_dir):
    """train_orpo's first attempt gets a one-minute limit; Slurm stops it (TIMEOUT) after its first
    checkpoints, the profile's ``retries`` resubmits it with the profile's runtime, and the new job resumes:
    the log says ``resumed from step N of M`` and metrics.csv has every step exactly once."""
    from test_checkpoints import KILL_CFG, PAIRS, SNAKEFILE

    settings = {**KILL_CFG, "max_steps": TIMELIMIT_STEPS, "save_steps": 100, "save_total_limit": 1}
    train = tmp_path / "train.parquet"
    pd.DataFrame(PAIRS).to_parquet(train, index=False)
    (tmp_path / "config.yaml").write_text(json.dumps({"model": str(tiny_model_dir), "train": str(train),
                                                      "settings": settings}))
    (tmp_path / "Snakefile").write_text(SNAKEFILE % REPO)
    profile = overlay_profile(tmp_path / "profile")
    before = {j["JobID"] for j in sacct_jobs(cluster)}
    env = {**os.environ, **slurm_env(cluster), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", str(profile), *FAST],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    record("time-limit retry and resume through Slurm", time.monotonic() - began)
    log_text = (tmp_path / "logs/train_orpo/politeness.log").read_text() if \
        (tmp_path / "logs/train_orpo/politeness.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}\n--- log\n{log_text[-3000:]}"

    jobs = sorted((j for j in sacct_jobs(cluster) if j["JobID"] not in before and j["rule"] == "train_orpo"),
                  key=lambda j: int(j["JobID"]))
    assert [j["State"] for j in jobs] == ["TIMEOUT", "COMPLETED"], jobs
    resumed = [line for line in log_text.splitlines() if "resumed from step" in line]
    assert resumed, log_text[-3000:]
    step = int(re.search(rf"resumed from step (\d+) of {TIMELIMIT_STEPS}", resumed[-1]).group(1))
    assert 0 < step < TIMELIMIT_STEPS and step % settings["save_steps"] == 0, resumed[-1]
    metrics = pd.read_csv(tmp_path / "results/politeness/train/metrics.csv")
    assert metrics["step"].tolist() == list(range(1, TIMELIMIT_STEPS + 1)), "every step exactly once"
    assert metrics["loss"].notna().all()
    assert (tmp_path / "results/politeness/adapter/adapter_model.safetensors").is_file()
    assert not (tmp_path / "checkpoints").exists(), "checkpoints stay after the adapter is written"
