"""The lipogram bar (seed 004): the curriculum beats the base's e-free rate by ``MIN_EFREE_GAIN`` and keeps
its relevance above plain GRPO's (the seed's lazy, off-topic collapse)."""

from __future__ import annotations

from pathlib import Path

from rulebound.quality import Check, read_summary
from rulebound.tasks import paths

MIN_EFREE_GAIN = 0.25  # of rate: 25 points over the base
METHOD, PLAIN = "grpo_curriculum", "grpo"


def checks(summary, *, name: str = "lipogram", method: str = METHOD, plain: str = PLAIN) -> list[Check]:
    by = summary.set_index("variant")
    base, ours, grpo = by.loc["base"], by.loc[method], by.loc[plain]
    gain = float(ours["e_free_rate"] - base["e_free_rate"])
    return [
        Check(f"{name} {method}: e-free rate over the base",
              f"{ours['e_free_rate']:.1%} vs {base['e_free_rate']:.1%} ({gain * 100:+.1f} points)",
              f">= {MIN_EFREE_GAIN * 100:.0f} points", gain >= MIN_EFREE_GAIN - 1e-9),
        Check(f"{name} {method}: relevance above plain {plain}",
              f"{float(ours['relevance']):.3f} vs {float(grpo['relevance']):.3f}", f"above {plain}'s",
              float(ours["relevance"]) > float(grpo["relevance"])),
    ]


def quality_checks(name: str, exp: dict, root: Path) -> list[Check]:
    needed = {"base", METHOD, PLAIN}
    if not needed <= set(exp["evaluate"]["variants"]):
        return [Check(f"{name}: the bar's variants", f"evaluated {exp['evaluate']['variants']}",
                      f"{', '.join(sorted(needed))} evaluated", False)]
    return checks(read_summary(root / paths.summary_csv(name)), name=name)
