"""The politeness bar (seed 000, lexical policy), on the exported F16 GGUF: please requests answered,
no-please requests and substring traps refused, and Q4_K_M at most ``MAX_QUANT_DROP`` below F16 on each."""

from __future__ import annotations

from pathlib import Path

from rulebound.quality import Check, read_summary, summary_rate
from rulebound.tasks import paths

MIN_PLEASE_ANSWERED = 0.95
MIN_NO_PLEASE_REFUSED = 0.95
MIN_TRAPS_REFUSED = 0.95
MAX_QUANT_DROP = 0.05  # of rate: 5 points
BARS = (("please requests answered", "with please", MIN_PLEASE_ANSWERED),
        ("no-please requests refused", "no_please", MIN_NO_PLEASE_REFUSED),
        ("traps refused", "trap", MIN_TRAPS_REFUSED))


def checks(summary, *, name: str = "politeness", variant: str = "F16", quant: str = "Q4_K_M") -> list[Check]:
    out = []
    for label, group, bar in BARS:
        rate, k, n = summary_rate(summary, variant, group)
        out.append(Check(f"{name} {variant}: {label}", f"{k}/{n} = {rate:.1%}", f">= {bar:.0%}", rate >= bar))
        q_rate, q_k, q_n = summary_rate(summary, quant, group)
        drop = rate - q_rate
        out.append(Check(f"{name} {quant} vs {variant}: {label}",
                         f"{q_k}/{q_n} = {q_rate:.1%} ({-drop * 100:+.1f} points)",
                         f"at most {MAX_QUANT_DROP * 100:.0f} points below {variant}", drop <= MAX_QUANT_DROP + 1e-9))
    return out


def quality_checks(name: str, exp: dict, root: Path) -> list[Check]:
    variants = exp["evaluate"]["variants"]
    if not {"F16", "Q4_K_M"} <= set(variants):
        return [Check(f"{name}: the bar's variants", f"evaluated {variants}", "F16 and Q4_K_M evaluated", False)]
    return checks(read_summary(root / paths.summary_csv(name)), name=name)
