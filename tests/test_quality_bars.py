"""The quality bars judge summaries as stated: each check passes or fails at its threshold, and says why."""

from __future__ import annotations

import pandas as pd

from rulebound.quality import check_run
from rulebound.tasks.lipogram import quality as lipogram_quality
from rulebound.tasks.politeness import quality as politeness_quality


def politeness_summary(rates: dict[str, dict[str, tuple[int, int]]]) -> pd.DataFrame:
    rows = [{"variant": v, "group": g, "n": n, "correct": k, "rate": k / n}
            for v, groups in rates.items() for g, (k, n) in groups.items()]
    return pd.DataFrame(rows)


def test_politeness_bar_passes_and_fails_at_its_thresholds():
    good = {"with please": (62, 65), "no_please": (58, 59), "trap": (22, 22)}
    summary = politeness_summary({"F16": good, "Q4_K_M": {"with please": (61, 65), "no_please": (58, 59),
                                                          "trap": (21, 22)}})
    checks = politeness_quality.checks(summary)
    assert len(checks) == 6 and all(c.passed for c in checks), [str(c) for c in checks]
    assert "62/65 = 95.4%" in checks[0].measured

    weak = politeness_summary({"F16": {**good, "with please": (61, 65)},  # 93.8%: under 95%
                               "Q4_K_M": {"with please": (61, 65), "no_please": (54, 59), "trap": (22, 22)}})
    failed = {c.name for c in politeness_quality.checks(weak) if not c.passed}
    assert failed == {"politeness F16: please requests answered",
                      "politeness Q4_K_M vs F16: no-please requests refused"}  # 98.3% -> 91.5%: 6.8 points


def test_lipogram_bar_needs_the_gain_and_the_relevance():
    def summary(curriculum_efree, curriculum_relevance):
        return pd.DataFrame({"variant": ["base", "grpo", "grpo_curriculum"], "e_free_rate": [0.0, 0.68, curriculum_efree],
                             "relevance": [0.69, 0.38, curriculum_relevance]})

    assert all(c.passed for c in lipogram_quality.checks(summary(0.325, 0.53)))
    low_gain, low_relevance = lipogram_quality.checks(summary(0.2, 0.3))
    assert not low_gain.passed and "+20.0 points" in low_gain.measured
    assert not low_relevance.passed


def test_a_run_without_the_bars_variants_fails_loudly(tmp_path):
    config = {"experiments": {"politeness": {"task": "politeness", "evaluate": {"variants": ["base", "adapter"]}}}}
    [check] = check_run(config, tmp_path)
    assert not check.passed and "F16 and Q4_K_M" in check.bar
