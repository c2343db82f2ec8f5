"""The quality gate's run: config.yaml's gated experiments trained as there, evaluated on what their bars read.
Shared by the gate (tests/test_quality.py) and the llama-server test, which serves the gate's Q4_K_M on the
whole politeness evaluation (fixture ``gate_run`` in tests/conftest.py)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import yaml

from smoke.pipeline import REPO, snakemake

GATED_EXPERIMENTS = ("politeness",)
POLITENESS_VARIANTS = ["F16", "Q4_K_M"]
LIPOGRAM_METHODS = ["sft", "grpo", "grpo_curriculum"]
LIPOGRAM_VARIANTS = ["base", "grpo", "grpo_curriculum"]

def gate_config(default: dict) -> dict:
    """config.yaml's gated experiments, trained as there, evaluated on what their bars read."""
    config = copy.deepcopy(default)
    exps = config["experiments"]
    for name in list(exps):
        if name not in GATED_EXPERIMENTS:
            del exps[name]
    if "politeness" in exps:
        exps["politeness"]["evaluate"]["variants"] = list(POLITENESS_VARIANTS)
        exps["politeness"]["export"]["quants"] = ["Q4_K_M"]
    if "lipogram" in exps:
        lip = exps["lipogram"]
        lip["methods"] = {m: lip["methods"][m] for m in LIPOGRAM_METHODS}
        lip["export"]["methods"] = []
        lip["evaluate"]["variants"] = list(LIPOGRAM_VARIANTS)
    return config


def build_gate(workdir: Path) -> tuple[Path, dict]:
    from rulebound.config import validate_config
    from rulebound.tasks import paths

    config = gate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [paths.summary_csv(name) for name in config["experiments"]]
    start = time.perf_counter()
    snakemake(workdir, *targets, configfile=configfile)
    print(f"\n[quality gate] trained and evaluated {', '.join(config['experiments'])} in "
          f"{time.perf_counter() - start:.0f} s")
    validate_config(config, REPO / "schemas" / "config.schema.yaml")  # fills in the defaults check_run reads
    return workdir, config
