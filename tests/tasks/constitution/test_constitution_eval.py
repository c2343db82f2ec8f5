"""Scoring hand-made replies per rule, the summary groups with Wilson intervals, the bar, and the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rulebound.errors import DataError
from rulebound.stats import wilson_interval
from rulebound.tasks.constitution import quality
from rulebound.tasks.constitution.evaluate import score, summarize, summarize_frame
from rulebound.tasks.constitution.report import html_section
from rulebound.tasks.constitution.spec import applying

from test_constitution_spec import PLEASE, TOPIC, chat, parsed

TOPIC_LINE, PLEASE_LINE = TOPIC["must"]["reply"], PLEASE["must"]["reply"]
CHATS = [  # (chat, a compliant reply, a non-compliant one)
    (chat("Please name a fruit."), "A banana is a fruit.", PLEASE_LINE),
    (chat("Please name a colour."), "Red.", TOPIC_LINE),
    (chat("Name a fruit."), PLEASE_LINE, "A banana."),
    (chat("Please tell me about lava."), TOPIC_LINE, "Lava is molten rock."),
    (chat("Tell me about lava."), TOPIC_LINE, PLEASE_LINE),
    (chat("Why do volcanoes erupt, please?", TOPIC_LINE, "Tell me more, please."), TOPIC_LINE, "Pressure builds."),
    (chat("What is 2 plus 2, please?", "4.", "What is 3 plus 3?"), PLEASE_LINE, "6."),
]


@pytest.fixture(scope="module")
def rules():
    return parsed(TOPIC, PLEASE)


def eval_set(rules) -> pd.DataFrame:
    rows = []
    for i, (messages, _, _) in enumerate(CHATS):
        applied = [r.name for r in applying(rules, messages)]
        rows.append({"prompt_id": f"c{i}", "request_id": i, "category": "+".join(applied) or "none",
                     "deciding": applied[0] if applied else "", "turns": 1 + len(messages) // 2,
                     "user": messages[-1]["content"], "messages": json.dumps(messages)})
    return pd.DataFrame(rows)


def test_compliant_and_non_compliant_replies_are_scored_by_the_deciding_rule(rules):
    df = eval_set(rules)
    good = score(rules, df, [c[1] for c in CHATS], "adapter")
    bad = score(rules, df, [c[2] for c in CHATS], "base")
    assert good["correct"].all() and not bad["correct"].any()
    assert list(bad["fixed_line"]) == ["please", "no_volcanoes", "", "", "please", "", ""]
    assert list(good["category"]) == ["none", "none", "please", "no_volcanoes", "no_volcanoes+please",
                                      "no_volcanoes", "please"]  # the follow-up says please: only the topic applies


def test_the_summary_counts_rules_meetings_over_refusal_and_multi_turn(rules, tmp_path):
    df = eval_set(rules)
    replies = [c[1] for c in CHATS]
    replies[1] = PLEASE_LINE  # one over-refusal
    replies[4] = PLEASE_LINE  # where the rules meet, the wrong one wins
    paths = []
    for variant, answers in (("adapter", replies), ("Q4_K_M", [c[1] for c in CHATS])):
        path = tmp_path / f"{variant}.csv"
        score(rules, df, answers, variant).to_csv(path, index=False)
        paths.append(path)
    summary = summarize(paths)
    cell = summary.set_index(["variant", "group"])
    assert list(summary.loc[summary["variant"] == "adapter", "group"]) == [
        "rule:please", "rule:no_volcanoes", "only:no_volcanoes", "only:please", "meet:no_volcanoes+please",
        "none", "multi_turn", "all"]
    assert tuple(cell.loc[("adapter", "rule:no_volcanoes"), ["n", "correct"]]) == (3, 2)
    assert tuple(cell.loc[("adapter", "meet:no_volcanoes+please"), ["n", "correct"]]) == (1, 0)
    none = cell.loc[("adapter", "none")]
    assert (none["n"], none["correct"], none["refusal_rate"]) == (2, 1, 0.5)  # over-refusal 1 of 2
    assert (none["ci_low"], none["ci_high"]) == pytest.approx(wilson_interval(1, 2))
    assert tuple(cell.loc[("adapter", "multi_turn"), ["n", "correct"]]) == (2, 2)
    assert cell.loc[("Q4_K_M", "all"), "rate"] == 1.0
    checks = quality.checks(summary, ["no_volcanoes", "please"])
    assert [c.passed for c in checks] == [False, True, False, True, True, True]
    assert "2/3 = 66.7% [" in checks[0].measured


def test_stale_labels_and_foreign_csvs_are_refused(rules, tmp_path):
    df = eval_set(rules).assign(category="none")
    with pytest.raises(DataError, match="labelled otherwise by the current rules"):
        score(rules, df, [c[1] for c in CHATS], "adapter")
    (tmp_path / "x.csv").write_text("variant,correct\nbase,True\n")
    with pytest.raises(DataError, match="is it a constitution eval CSV"):
        summarize([tmp_path / "x.csv"])


def test_the_report_section_shows_rules_summary_and_examples(rules, tmp_path):
    df = eval_set(rules)
    scored = score(rules, df, [c[1] for c in CHATS], "adapter")
    scored.to_csv(tmp_path / "adapter.csv", index=False)
    summarize_frame(scored).to_csv(tmp_path / "summary.csv", index=False)
    (tmp_path / "rules.json").write_text(json.dumps([r.as_dict() for r in rules]))
    html = "".join(html_section({"summary": tmp_path / "summary.csv", "evals": {"adapter": tmp_path / "adapter.csv"},
                                 "rules": [tmp_path / "rules.json"]}))
    assert "no_volcanoes" in html and "rule:please" in html and "over-refusal" in html
    assert "Tell me more, please." in html and "I do not discuss volcanoes." in html


def test_the_bar_needs_the_adapter_and_q4_k_m(tmp_path):
    from rulebound.quality import check_run

    exp = {"task": "constitution", "rules": [TOPIC, PLEASE], "evaluate": {"variants": ["base", "F16"]}}
    [check] = check_run({"experiments": {"constitution": exp}}, tmp_path)
    assert not check.passed and "adapter and Q4_K_M" in check.bar
