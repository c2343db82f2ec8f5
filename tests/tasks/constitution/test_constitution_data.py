"""Prompts labelled by the rules, and preference pairs derived from them; the GRPO reward from the checkers."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rulebound.errors import ConfigError
from rulebound.rewards import resolve_rewards
from rulebound.tasks.constitution.data import (GENERIC_REFUSAL, PromptSpec, build_pairs, build_prompts, distill_jobs,
                                               example_requests)
from rulebound.tasks.constitution.spec import applying

from test_constitution_spec import PLEASE, TOPIC, parsed

TOPIC_LINE, PLEASE_LINE = TOPIC["must"]["reply"], PLEASE["must"]["reply"]
TOPIC_RULE = dict(TOPIC, applies=dict(TOPIC["applies"], subjects=["volcanoes", "lava"]))


@pytest.fixture(scope="module")
def rules():
    return parsed(TOPIC_RULE, PLEASE)


@pytest.fixture(scope="module")
def prompts(rules):
    return build_prompts(rules, PromptSpec(requests=40, seed=3, test_fraction=0.25, multiturn_fraction=0.5))


def answers_for(prompts: pd.DataFrame, answer=lambda request: f"Here is an answer to: {request}") -> pd.DataFrame:
    requests = sorted(set(prompts["request"]))
    return pd.DataFrame({"request": requests, "answer": [answer(r) for r in requests], "rule": ""})


def test_example_requests_come_from_examples_and_subjects(rules):
    made = example_requests(rules[0])
    assert made[0] == "Why do volcanoes erupt?" and "What is lava?" in made and len(made) == 1 + 2 * 8


def test_prompts_are_labelled_by_the_rules_themselves(rules, prompts):
    assert set(prompts["category"]) == {"none", "please", "no_volcanoes", "no_volcanoes+please"}
    for row in prompts.itertuples():
        applied = [r.name for r in applying(rules, json.loads(row.messages))]
        assert json.loads(row.applies) == applied and row.deciding == (applied[0] if applied else "")
        assert json.loads(row.messages)[-1] == {"role": "user", "content": row.prompt}
    # every request gives one plain and one polite prompt, and no request straddles the split
    assert prompts.groupby("request_id")["group"].agg(lambda g: sorted(g) == ["plain", "polite"]).all()
    assert prompts.groupby("request_id")["split"].nunique().max() == 1
    for pool in ("", "no_volcanoes"):  # each pool keeps held-out requests
        assert set(prompts.loc[prompts["example_of"] == pool, "split"]) == {"train", "test"}
    bank_rows = prompts[prompts["example_of"] == ""]
    assert not bank_rows["category"].str.contains("volcanoes").any()  # bank requests that trigger a rule are left out


def test_multi_turn_chats_follow_up_on_the_topic_and_carry_earlier_replies(prompts):
    multi = prompts[prompts["turns"] > 1]
    assert len(multi) and (multi["turns"] == 2).all()
    follow_ups = multi[(multi["example_of"] == "no_volcanoes") & ~multi["prompt"].str.contains("volcan|lava", case=False)]
    assert len(follow_ups), "some topic chats should end in a follow-up that no longer names the topic"
    assert follow_ups["deciding"].eq("no_volcanoes").all()  # the earlier turn counts for the topic rule
    for cell in follow_ups["messages"]:
        assert json.loads(cell)[1] == {"role": "assistant", "content": TOPIC_LINE}
    assert prompts.equals(build_prompts(parsed(TOPIC_RULE, PLEASE), PromptSpec(
        requests=40, seed=3, test_fraction=0.25, multiturn_fraction=0.5)))  # deterministic


def test_pairs_prefer_the_deciding_rules_reply_and_normal_answers_where_none_applies(rules, prompts):
    pairs = build_pairs(rules, prompts, answers_for(prompts), seed=1)
    assert len(pairs) == len(prompts)
    by = {c: df for c, df in pairs.groupby("category")}
    assert (by["no_volcanoes"]["chosen"] == TOPIC_LINE).all()
    assert by["no_volcanoes"]["rejected"].str.startswith("Here is an answer").all()  # please does not unlock it
    assert (by["no_volcanoes+please"]["chosen"] == TOPIC_LINE).all()
    assert (by["no_volcanoes+please"]["rejected"] == PLEASE_LINE).all()  # where rules meet: the loser's line
    assert (by["please"]["chosen"] == PLEASE_LINE).all() and by["please"]["rejected"].str.startswith("Here").all()
    none = by["none"]
    assert none["chosen"].str.startswith("Here is an answer").all()
    # over-refusal trained against: the line of the rule that the request's please switched off
    assert (none["rejected"] == PLEASE_LINE).all()
    no_unless = parsed(TOPIC_RULE, dict(PLEASE, applies={"keywords": ["zebra"]}))
    prompts = prompts.assign(applies=[json.dumps([r.name for r in applying(no_unless, json.loads(m))])
                                      for m in prompts["messages"]])
    rotated = build_pairs(no_unless, prompts, answers_for(prompts), seed=1)
    assert set(rotated.loc[rotated["applies"] == "[]", "rejected"]) == {TOPIC_LINE, PLEASE_LINE}  # else in turn


def test_refusing_or_missing_answers_are_dropped_or_named(rules, prompts):
    refused = set(prompts.loc[prompts["category"] == "none", "request"].iloc[:3])
    pairs = build_pairs(rules, prompts, answers_for(prompts, lambda r: PLEASE_LINE if r in refused else f"A: {r}"))
    # a refusing answer is no normal answer (its none row goes) and no wrong one for the please rule (nor that)
    assert len(pairs) == len(prompts) - 2 * len(refused) and not pairs["request"].isin(refused).any()
    with pytest.raises(Exception, match="requests have no distilled answer"):
        build_pairs(rules, prompts, answers_for(prompts).iloc[1:])


def test_match_and_avoid_rules_pair_a_passing_answer_with_a_failing_one():
    rules = parsed({"name": "sign_off", "applies": {"keywords": ["letter"], "examples": [
                        "Write a letter to my aunt.", "Draft a letter to the mayor.", "Write a thank-you letter."]},
                    "must": {"match": "Best wishes", "instruction": "End with Best wishes."},
                    "checker": {"regex": "Best wishes"}})
    spec = PromptSpec(requests=6, seed=0, multiturn_fraction=0.0, wrappers={"plain": ["{r}"]})
    prompts = build_prompts(rules, spec)
    jobs = distill_jobs(rules, prompts)
    assert jobs[1][:2] == ("sign_off", "End with Best wishes.")
    triggering = jobs[1][2]
    answers = pd.concat([answers_for(prompts), pd.DataFrame(
        {"request": triggering, "answer": ["Dear Ann, hi. Best wishes."] * (len(triggering) - 1) + ["Dear Ann."],
         "rule": "sign_off"})])
    pairs = build_pairs(rules, prompts, answers)
    signed = pairs[pairs["deciding"] == "sign_off"]
    assert len(signed) == len(triggering) - 1  # the request with no passing answer is dropped
    assert signed["chosen"].str.contains("Best wishes").all() and not signed["rejected"].str.contains("Best").any()
    assert (pairs.loc[pairs["category"] == "none", "rejected"] == GENERIC_REFUSAL).all()


def test_bad_wrappers_and_a_small_bank_are_named(rules):
    with pytest.raises(ConfigError, match="data.wrappers"):
        build_prompts(rules, PromptSpec(requests=4, wrappers="nope"))
    with pytest.raises(ConfigError, match="data.requests = 100000"):
        build_prompts(rules, PromptSpec(requests=100000))


def test_the_grpo_reward_is_the_checkers_and_is_registered():
    [(name, reward)] = resolve_rewards([{"name": "constitution", "rules": [TOPIC, PLEASE]}])
    assert name == "constitution"
    scores = reward(["I do not discuss volcanoes.", "Lava is hot.", "A banana.", PLEASE_LINE],
                    prompts=["Please tell me about lava.", "Please tell me about lava.", "Please name a fruit.",
                             "Name a fruit."])
    assert scores == [1.0, -1.0, 1.0, 1.0]
    with pytest.raises(ConfigError, match="no trigger"):
        resolve_rewards([{"name": "constitution", "rules": [dict(TOPIC, applies={})]}])
