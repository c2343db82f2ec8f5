"""The ORPO throughput benchmark runs end to end on a CPU (--tiny): its table and JSON stay usable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_orpo_throughput_tiny_runs_and_reports_every_column(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "RULEBOUND_BENCH_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "orpo_throughput.py"), "--tiny", "--losses",
                           "--contenders", "hf,unsloth,rulebound-hf-padded", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skip unsloth: Unsloth needs a CUDA GPU" in proc.stderr
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| contender"))
    for column in ("s/step", "samples/s", "tokens/s", "peak", "MFU"):
        assert column in header, header
    results = json.loads(out.read_text())
    assert [r["contender"] for r in results] == ["hf", "rulebound-hf-padded"]
    for r in results:
        assert r["s_per_step"] > 0 and len(r["losses"]) >= 1 and all(loss > 0 for loss in r["losses"])
    # the two trainers compute the same ORPO loss on the same first batch (fp32 on the CPU)
    assert abs(results[0]["losses"][0] - results[1]["losses"][0]) < 1e-3 * results[0]["losses"][0]


def _tiny_bench(script, tmp_path, contenders):
    out = tmp_path / f"{script}.json"
    env = {**os.environ, "RULEBOUND_BENCH_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), "--tiny", "--contenders", contenders,
                           "--json", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_grpo_throughput_tiny_times_generation_and_training_for_each_trainer(tmp_path):
    proc, results = _tiny_bench("grpo_throughput.py", tmp_path, "trl,rulebound")
    assert [r["trainer"] for r in results] == ["GRPOTrainer", "FastGRPOTrainer"]
    header = next(line for line in proc.stdout.splitlines() if line.startswith("| contender"))
    for column in ("generation s/step", "training s/step", "samples/s", "tokens/s", "peak GiB"):
        assert column in header, header
    for r in results:  # fixed-length completions: 2 prompts x 2 generations x 8 tokens
        assert r["gen_s"] > 0 and r["train_s"] > 0 and r["completion_tokens"] == 32
        assert all(length == 8 for length in r["mean_length"]) and len(r["losses"]) == 3


def test_sft_throughput_tiny_gives_the_same_losses_packed(tmp_path):
    _, results = _tiny_bench("sft_throughput.py", tmp_path, "trl,rulebound")
    trl, fast = results
    assert fast["trainer"] == "FastSFTTrainer" and trl["padding"] > 0
    assert fast["losses"] == pytest.approx(trl["losses"], rel=1e-4) and all(loss > 0 for loss in trl["losses"])
