"""Run Snakemake on the smoke config: shared by the end-to-end test and every test that needs its artifacts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "tests" / "smoke" / "config.yaml"
EXP = "politeness"


def snakemake(workdir: Path, *args: str, configfile: Path = SMOKE, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", *args]
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=workdir)
    if check and proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((workdir / "logs").rglob("*.log")))
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}\n{logs}")
    return proc


def planned_rules(workdir: Path, *args: str, configfile: Path = SMOKE) -> set[str]:
    proc = snakemake(workdir, "-n", *args, configfile=configfile)
    text = proc.stdout + proc.stderr
    return set(re.findall(r"^(?:local)?rule (\w+):", text, flags=re.M)) - {"all"}


def build_smoke(workdir: Path) -> Path:
    """One GGUF target first (nothing but what it needs may run), then everything else."""
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    target = f"results/{EXP}/gguf/{EXP}-Q4_K_M.gguf"
    planned = planned_rules(workdir, target)
    assert "quantize_gguf" in planned and "train_orpo" in planned, planned
    assert not planned & {"evaluate_hf", "evaluate_gguf", "summarize_eval", "plot_report", "render_report"}
    snakemake(workdir, target)
    assert not (workdir / f"results/{EXP}/eval").exists(), "a single GGUF target must not run evaluation"
    snakemake(workdir)
    return workdir
