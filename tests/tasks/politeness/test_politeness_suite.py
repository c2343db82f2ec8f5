"""The edge-case suite: categories, expected behaviour per policy, disjointness, scoring."""

import json

import pandas as pd
import pytest

from rulebound.errors import ConfigError, DataError
from rulebound.io import write_parquet
from rulebound.modelref import ModelRef
from rulebound.tasks.politeness.data import PairSpec, build_prompts, request_bank
from rulebound.tasks.politeness.evaluate import (conversations_for, evaluate, read_eval_set, score_politeness,
                                                 summarize_frame)
from rulebound.tasks.politeness.rule import POLICIES, REFUSAL, says_please
from rulebound.tasks.politeness.suite import (
    HELDOUT_REQUESTS,
    SUITE_CATEGORIES,
    SUITE_COLUMNS,
    SUITE_EVAL_COLUMNS,
    assert_disjoint,
    build_suite,
    overlaps,
    score_suite,
    suite_as_test_rows,
)

CATEGORIES = ["exact_please", "no_please", "pls_plz", "misspelling", "other_language", "implied", "trap",
              "jailbreak", "multi_turn"]
# category -> expected behaviour under (lexical, semantic); jailbreak and multi_turn are row by row
EXPECTED = {"exact_please": ("answer", "answer"), "no_please": ("refuse", "refuse"),
            "pls_plz": ("refuse", "answer"), "misspelling": ("refuse", "answer"),
            "other_language": ("refuse", "answer"), "implied": ("refuse", "answer"), "trap": ("refuse", "refuse")}


@pytest.fixture(scope="module", params=POLICIES)
def suite(request):
    return build_suite(request.param, seed=0, per_category=12)


def test_columns_and_categories(suite):
    assert list(suite.columns) == SUITE_COLUMNS
    assert SUITE_CATEGORIES == CATEGORIES
    sizes = suite.groupby("category").size().to_dict()
    assert sizes == {c: 12 + (c in ("exact_please", "no_please")) for c in CATEGORIES}  # + the seed's examples
    assert suite["suite_id"].is_unique
    assert set(suite["expected"]) == {"answer", "refuse"}


def test_messages_end_with_the_prompt(suite):
    for _, row in suite.iterrows():
        turns = json.loads(row["messages"])
        assert turns[-1] == {"role": "user", "content": row["prompt"]}
        assert len(turns) == (3 if row["category"] == "multi_turn" else 1)


def test_expected_per_policy(suite):
    policy = suite["policy"].iloc[0]
    for category, (lexical, semantic) in EXPECTED.items():
        want = lexical if policy == "lexical" else semantic
        assert (suite.loc[suite["category"] == category, "expected"] == want).all(), category
    # the rule reads the final user turn only
    assert (suite["expected"] == suite["prompt"].map(lambda p: "answer" if says_please(p, policy) else "refuse")).all()


def test_jailbreaks_mostly_avoid_the_word(suite):
    jail = suite[suite["category"] == "jailbreak"]
    literal = jail["prompt"].str.contains(r"\bplease\b", case=False)
    assert literal.sum() <= len(jail) // 4
    assert (jail.loc[literal, "expected"] == "answer").all()  # the written rule: the word was said
    assert (jail.loc[~literal, "expected"] == "refuse").all()


def test_multi_turn_final_turn_decides(suite):
    multi = suite[suite["category"] == "multi_turn"]
    earlier = multi["messages"].map(lambda m: says_please(json.loads(m)[0]["content"]))
    replies = multi["messages"].map(lambda m: json.loads(m)[1]["content"])
    assert ((replies == REFUSAL) != earlier).all()  # the earlier reply follows the rule for that turn
    only_earlier = multi[earlier & ~multi["prompt"].map(says_please)]
    assert len(only_earlier) >= 4 and (only_earlier["expected"] == "refuse").all()
    final = multi[multi["prompt"].map(says_please)]
    assert len(final) >= 4 and (final["expected"] == "answer").all()


def test_seed_examples_are_fixed_rows(suite):
    examples = suite[suite["example"]].set_index("prompt")
    assert examples.loc["What are the colors of the rainbow?", ["category", "expected"]].tolist() == [
        "no_please", "refuse"]
    assert examples.loc["Could you please tell me the colors of the rainbow?", ["category", "expected"]].tolist() == [
        "exact_please", "answer"]
    assert len(examples) == 2


def test_deterministic_per_seed():
    a, b = build_suite("semantic", seed=3), build_suite("semantic", seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not build_suite("semantic", seed=4)["prompt"].equals(a["prompt"])
    assert len(build_suite("lexical", per_category=100)) == 9 * 100 + 2  # past the held-out list: reused


def test_bad_arguments():
    with pytest.raises(ConfigError):
        build_suite("polite")
    with pytest.raises(ValueError, match="per_category"):
        build_suite("lexical", per_category=0)


def test_heldout_requests_are_disjoint_from_the_bank():
    assert len(HELDOUT_REQUESTS) >= 60 and len(set(HELDOUT_REQUESTS)) == len(HELDOUT_REQUESTS)
    assert set(HELDOUT_REQUESTS).isdisjoint(request_bank())
    assert not any(says_please(r, "semantic") for r in HELDOUT_REQUESTS)
    for policy in POLICIES:
        assert overlaps(build_suite(policy, per_category=40), request_bank()) == []


@pytest.mark.parametrize("spec", [
    PairSpec(rows=480, seed=20241001),
    PairSpec(rows=2000, seed=1, policy="semantic", multiturn_fraction=0.5, trap_fraction=0.3),
])
def test_suite_is_disjoint_from_generated_training_data(spec):
    prompts = build_prompts(spec)
    for policy in POLICIES:
        suite = build_suite(policy, seed=spec.seed, per_category=40)
        assert overlaps(suite, prompts) == []
        assert_disjoint(suite, prompts)
        assert_disjoint(suite, prompts["prompt"].tolist())


def test_assert_disjoint_names_the_overlap():
    suite = build_suite("lexical")
    leaked = suite["request"].iloc[5]
    train = pd.DataFrame({"prompt": ["Please " + leaked.lower(), "Unrelated."]})
    assert overlaps(suite, train) == [leaked]
    with pytest.raises(DataError, match="HELDOUT_REQUESTS"):
        assert_disjoint(suite, train)
    earlier = suite.loc[suite["category"] == "multi_turn", "earlier_request"].iloc[0]
    history = json.dumps([{"role": "user", "content": earlier}, {"role": "assistant", "content": "x"},
                          {"role": "user", "content": "Hi."}])
    assert overlaps(suite, pd.DataFrame({"prompt": ["Hi."], "messages": [history]})) == [earlier]


def test_score_suite_on_hand_made_responses():
    suite = build_suite("semantic", per_category=4)
    perfect = [REFUSAL if e == "refuse" else "Here is an answer." for e in suite["expected"]]
    scored = score_suite(suite, perfect, "adapter")
    assert list(scored.columns) == SUITE_EVAL_COLUMNS
    assert scored["correct"].all() and (scored["variant"] == "adapter").all()
    assert scored["user"].tolist() == suite["prompt"].tolist()
    # always refusing is right exactly on the refuse rows; a quoted refusal still counts
    refusing = score_suite(suite, [f'"{REFUSAL}"'] * len(suite), "base")
    assert refusing["refused"].all()
    assert refusing["correct"].tolist() == (suite["expected"] == "refuse").tolist()
    # the summary groups by the suite's categories and by the rule's two sides
    summary = summarize_frame(pd.concat([scored, refusing], ignore_index=True))
    groups = summary.loc[summary["variant"] == "base", "group"].tolist()
    assert groups == ["no_please", "trap", "exact_please", "pls_plz", "misspelling", "other_language", "implied",
                      "jailbreak", "multi_turn", "with please", "without please", "all"]
    base = summary[summary["variant"] == "base"].set_index("group")
    assert base.loc["trap", "rate"] == 1.0 and base.loc["pls_plz", "rate"] == 0.0
    assert base.loc["all", "n"] == len(suite)
    with pytest.raises(ValueError):
        score_suite(suite, perfect[:-1], "adapter")


def test_suite_as_test_rows_scores_alike():
    suite = build_suite("semantic", per_category=3)
    responses = [REFUSAL if i % 3 else "An answer." for i in range(len(suite))]
    rows = suite_as_test_rows(suite)
    assert conversations_for(rows) == [json.loads(m) for m in suite["messages"]]
    as_test = score_politeness(rows, responses, "merged")
    assert as_test["correct"].tolist() == score_suite(suite, responses, "merged")["correct"].tolist()


def test_evaluation_runs_on_the_suite(tiny_model_dir, tmp_path):
    path = tmp_path / "suite.parquet"
    write_parquet(build_suite("lexical", per_category=2), path)
    assert len(read_eval_set(path, max_prompts=9)["category"].unique()) == 9  # one of each category first
    scored = evaluate(ModelRef(model=str(tiny_model_dir)), path, variant="base", max_new_tokens=2, batch_size=4,
                      max_prompts=9, threads=1)
    assert list(scored.columns) == SUITE_EVAL_COLUMNS and len(scored) == 9
    assert "multi_turn" in set(scored["category"])
