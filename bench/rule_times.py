"""Per-rule wall time and peak memory of a finished run, from Snakemake's `benchmark:` files.

    python bench/rule_times.py [benchmarks/]      # prints a markdown table for docs/benchmarks.md
"""

import sys
from pathlib import Path

import pandas as pd


def collect(root: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        bench = pd.read_csv(tsv, sep="\t")
        rule, *job = tsv.relative_to(root).with_suffix("").parts  # benchmarks/<rule>/<job...>.tsv
        rows.append({
            "rule": rule,
            "job": "/".join(job),
            "wall_s": float(bench["s"].iloc[0]),
            "max_rss_mb": float(bench["max_rss"].iloc[0]),
            "cpu_time_s": float(bench["cpu_time"].iloc[0]) if "cpu_time" in bench else float("nan"),
        })
    return pd.DataFrame(rows)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks")
    df = collect(root)
    if df.empty:
        sys.exit(f"no benchmark files under {root}")
    lines = ["| rule | job | wall (s) | max RSS (MB) | CPU time (s) |", "| --- | --- | ---: | ---: | ---: |"]
    for r in df.sort_values("wall_s", ascending=False).itertuples():
        lines.append(f"| {r.rule} | {r.job} | {r.wall_s:.1f} | {r.max_rss_mb:.0f} | {r.cpu_time_s:.1f} |")
    lines.append(f"| **sum** | | **{df['wall_s'].sum():.1f}** | | |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
