"""Quality bars: each task states what its trained model must do, checked on a finished run's files.

These are the product: a change that breaks training but keeps every file shape must fail them. A task's
bars and thresholds live in one place, its ``quality`` module (``rulebound/tasks/<task>/quality.py``), and
reach the stages through ``Task.quality_checks``. The CI gate (``tests/test_quality.py``, marker
``quality``) trains the default experiments and runs them; so does, on any finished run::

    python -m rulebound.quality [--config config.yaml] [results-root]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    bar: str
    passed: bool

    def __str__(self) -> str:
        return f"[{'pass' if self.passed else 'FAIL'}] {self.name}: {self.measured} (bar: {self.bar})"


def read_summary(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def summary_rate(summary: pd.DataFrame, variant: str, group: str) -> tuple[float, int, int]:
    """(rate, correct, n) of one variant and group of a summary with ``variant``/``group``/``correct``/``n``."""
    row = summary[(summary["variant"] == variant) & (summary["group"] == group)]
    if row.empty:
        raise KeyError(f"the summary has no row for variant {variant!r}, group {group!r}; evaluate that variant")
    row = row.iloc[0]
    return float(row["rate"]), int(row["correct"]), int(row["n"])


def check_run(config: dict, root: str | Path = ".") -> list[Check]:
    """Every experiment's checks, as its task states them (a validated config: defaults filled in)."""
    from rulebound.tasks import registry

    checks = []
    for name, exp in config["experiments"].items():
        checks += registry.get(exp["task"]).quality_checks(name, exp, Path(root))
    return checks


def main(argv: list[str] | None = None) -> int:
    import yaml

    from rulebound.config import validate_config

    parser = argparse.ArgumentParser(description="Check a finished run against its tasks' quality bars.")
    parser.add_argument("root", nargs="?", default=".", help="the run's working directory (holds results/)")
    parser.add_argument("--config", default="config.yaml", help="the config the run used")
    args = parser.parse_args(argv)
    config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    validate_config(config, Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml")
    checks = check_run(config, args.root)
    for check in checks:
        print(check)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
