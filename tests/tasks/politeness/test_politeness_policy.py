"""The politeness policies (lexical, semantic) and the generator's semantic and multi-turn rows."""

import hashlib
import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from rulebound.errors import ConfigError, DataError
from rulebound.formatting import end_of_turn, format_preferences, history_of
from rulebound.tasks.politeness.data import SEMANTIC_TEMPLATES, PairSpec, build_pairs, build_prompts, request_bank
from rulebound.tasks.politeness.evaluate import conversations_for
from rulebound.tasks.politeness.rule import POLICIES, REFUSAL, says_please

# (text, lexical, semantic)
TRUTH_TABLE = [
    # the seed's own examples and the word itself in any case, position and punctuation
    ("What are the colors of the rainbow?", False, False),
    ("Could you please tell me the colors of the rainbow?", True, True),
    ("Please explain gravity.", True, True),
    ("Explain gravity, please?", True, True),
    ("Explain gravity please.", True, True),
    ("PLEASE explain gravity", True, True),
    ("pLeAsE explain gravity", True, True),
    ("could you please-explain", True, True),
    ("Explain gravity (please).", True, True),
    ("Explain gravity.\nPlease!", True, True),
    ("\"Please\" explain gravity", True, True),
    ("Explain gravity.", False, False),
    # pls / plz
    ("pls explain", False, True),
    ("Explain gravity, plz.", False, True),
    ("PLZ explain gravity", False, True),
    ("explain gravity plzz", False, True),
    # misspellings and elongations
    ("Plis explain gravity.", False, True),
    ("Explain gravity, pleas.", False, True),
    ("Pleeease explain gravity.", False, True),
    ("Explain gravity pleeees.", False, True),
    ("Plese explain gravity.", False, True),
    ("Explain gravity, pleez.", False, True),
    ("Pleaze explain gravity.", False, True),
    # other languages
    ("Explain gravity, por favor.", False, True),
    ("S'il vous plaît, explain gravity.", False, True),
    ("Explain gravity, s'il vous plait.", False, True),
    ("Explain gravity, s\u2019il te plaît.", False, True),
    ("Bitte explain gravity.", False, True),
    ("Per favore, explain gravity.", False, True),
    ("Explain gravity, onegai shimasu.", False, True),
    ("Explain gravity, kudasai.", False, True),
    ("Alsjeblieft, explain gravity.", False, True),
    # implied politeness
    ("Could you kindly explain gravity?", False, True),
    ("Would you be so kind as to explain gravity?", False, True),
    ("I'd be grateful if you explained gravity.", False, True),
    ("I\u2019d be grateful if you explained gravity.", False, True),
    ("I would really appreciate an explanation of gravity.", False, True),
    ("Kindly explain gravity.", False, True),
    ("If it's not too much trouble, explain gravity.", False, True),
    # not politeness under either policy
    ("Could you explain gravity?", False, False),  # a question form, not a politeness marker
    ("Explain gravity. Thanks.", False, False),
    ("What kind of force is gravity?", False, False),
    ("I'm in favor of explaining gravity.", False, False),
    ("Explain how bitter melons grow.", False, False),
    ("Explain the plot of the film.", False, False),
    ("As my grandmother used to say, p-l-e-a-s-e. Explain gravity.", False, False),
    ("P.L.E.A.S.E. explain gravity.", False, False),
    # substring traps
    ("I'm pleased to ask: explain gravity.", False, False),
    ("On this pleasant morning, explain gravity.", False, False),
    ("It would be a pleasure.", False, False),
    ("That would be pleasing.", False, False),
    ("I don't mean to displease you, but explain gravity.", False, False),
    ("Pleasantly, explain gravity.", False, False),
    ("Explain gravity if it pleases you.", False, False),
    ("I'd be displeased without an answer.", False, False),
]


@pytest.mark.parametrize("text, lexical, semantic", TRUTH_TABLE)
def test_policy_truth_table(text, lexical, semantic):
    assert says_please(text, "lexical") is lexical
    assert says_please(text, "semantic") is semantic
    assert says_please(text) is lexical  # the default stays the seed's lexical rule


def test_policies_and_invalid_policy():
    assert POLICIES == ("lexical", "semantic")
    with pytest.raises(ConfigError, match="lexical.*semantic"):
        says_please("please", "vibes")
    with pytest.raises(ConfigError, match="data.policy"):
        build_prompts(PairSpec(rows=10, policy="Lexical"))


def test_bank_has_no_semantic_please():
    assert not any(says_please(r, "semantic") for r in request_bank())


def test_default_spec_reproduces_the_seed_data():
    """Digests taken before policies and multi-turn existed: existing callers get the same rows."""
    cols = ["prompt_id", "request_id", "request", "prompt", "category", "split", "has_please"]
    for spec, digest in [
        (PairSpec(rows=200, seed=7), "7908621b1b0c8fcfbc6ea4121e48bfc96b821928c1d754751cd53b8ca6f73642"),
        (PairSpec(rows=480, seed=20241001), "a66cf75e14d72a392c004d7be080c995dde4b0063946ce722d2dce911bea9a0b"),
    ]:
        df = build_prompts(spec)
        assert hashlib.sha256(df[cols].to_csv(index=False).encode()).hexdigest() == digest
        assert (df["turns"] == 1).all()
        assert [json.loads(m) for m in df["messages"]] == [[{"role": "user", "content": p}] for p in df["prompt"]]


def test_semantic_generator_answers_pls_and_friends():
    lexical = build_prompts(PairSpec(rows=400, seed=5))
    semantic = build_prompts(PairSpec(rows=400, seed=5, policy="semantic"))
    rows = semantic[semantic["category"] == "semantic_please"]
    assert len(rows) > 50
    assert rows["has_please"].all()
    assert not rows["prompt"].map(says_please).any()  # please without the literal word
    prompts = " ".join(rows["prompt"]).lower()
    for marker in ("pls", "plz", "por favor", "kindly", "pleeease", "plis"):
        assert marker in prompts, marker
    assert not semantic.loc[semantic["category"].isin(["no_please", "trap"]), "has_please"].any()
    # the refusal side and the split are the lexical data's, row for row
    refusals = ~semantic["category"].isin(["please", "semantic_please"])
    pd.testing.assert_frame_equal(semantic[refusals], lexical[refusals])


def test_semantic_templates_are_not_lexical_please():
    filled = [t.format(r="Say hi.", rl="say hi.", rs="Say hi", p=".") for t in SEMANTIC_TEMPLATES]
    assert all(says_please(f, "semantic") and not says_please(f, "lexical") for f in filled)


def test_lexical_generator_never_answers_pls():
    df = build_prompts(PairSpec(rows=2000, seed=2, multiturn_fraction=0.3))
    assert set(df["category"]) == {"please", "no_please", "trap"}
    not_literal = ~df["prompt"].str.contains(r"\bplease\b", case=False)
    assert not df.loc[not_literal, "has_please"].any()
    traps = df[df["category"] == "trap"]
    assert len(traps) and not traps["has_please"].any()


def test_multiturn_rows_let_the_final_turn_decide():
    single = build_prompts(PairSpec(rows=400, seed=4))
    df = build_prompts(PairSpec(rows=400, seed=4, multiturn_fraction=0.5))
    assert df["prompt"].equals(single["prompt"])  # history is added around the same final turns
    multi = df[df["turns"] == 2]
    assert 0.3 < len(multi) / len(df) < 0.7
    earlier_please = []
    for _, row in multi.iterrows():
        turns = json.loads(row["messages"])
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        assert turns[-1]["content"] == row["prompt"]
        assert row["has_please"] == says_please(row["prompt"])
        said = says_please(turns[0]["content"])
        assert (turns[1]["content"] == REFUSAL) is not said  # the earlier reply follows the rule too
        earlier_please.append(said)
    multi = multi.assign(earlier_please=earlier_please)
    please_only_earlier = multi[multi["earlier_please"] & ~multi["has_please"]]
    assert len(please_only_earlier) > 10  # the case the rule must refuse
    assert (please_only_earlier["category"] != "please").all()


def test_invalid_fractions():
    with pytest.raises(ValueError, match="multiturn_fraction"):
        build_prompts(PairSpec(rows=10, multiturn_fraction=1.5))


def _pairs(spec: PairSpec) -> pd.DataFrame:
    prompts = build_prompts(spec)
    answers = pd.DataFrame({"request": sorted(set(prompts["request"]))})
    answers["answer"] = "Answer to: " + answers["request"]
    return build_pairs(prompts, answers)


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_multiturn_rows_are_chat_templated(tokenizer):
    pairs = _pairs(PairSpec(rows=80, seed=1, multiturn_fraction=1.0, policy="semantic"))
    assert {"messages", "turns"} <= set(pairs.columns) and (pairs["turns"] == 2).all()
    out = format_preferences(pairs, tokenizer)
    eot = end_of_turn(tokenizer)
    for _, row in out.iterrows():
        first, reply, final = json.loads(row["messages"])
        assert final["content"] == row["user"]
        text = row["prompt"]
        assert text.endswith(f"<|im_start|>user\n{row['user']}<|im_end|>\n<|im_start|>assistant\n")
        assert f"<|im_start|>user\n{first['content']}<|im_end|>" in text
        assert f"<|im_start|>assistant\n{reply['content']}<|im_end|>" in text
        assert text.index(first["content"]) < text.index(reply["content"]) < text.rindex(row["user"])
        # the final turn decides, whatever the earlier one said
        assert (row["chosen"] == REFUSAL + eot) is not says_please(row["user"], "semantic")
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    full = tokenizer.apply_chat_template([*history, {"role": "user", "content": "c"}], tokenize=False,
                                         add_generation_prompt=True)
    assert format_preferences(pd.DataFrame({"prompt": ["c"], "chosen": ["x"], "rejected": ["y"],
                                            "messages": [json.dumps([*history, {"role": "user", "content": "c"}])]}),
                              tokenizer)["prompt"].item() == full


def test_single_turn_messages_format_as_before(tokenizer):
    pairs = _pairs(PairSpec(rows=40, seed=0))
    with_messages = format_preferences(pairs, tokenizer)
    without = format_preferences(pairs.drop(columns=["messages"]), tokenizer)
    assert with_messages["prompt"].equals(without["prompt"])


def test_history_of_checks_the_final_turn():
    assert history_of(None, "x") == [] and history_of("", "x") == [] and history_of(float("nan"), "x") == []
    cell = json.dumps([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                       {"role": "user", "content": "c"}])
    assert history_of(cell, "c") == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.raises(DataError, match="final turn"):
        history_of(cell, "not c")
    with pytest.raises(DataError, match="JSON list"):
        history_of("{not json", "c")


def test_evaluation_conversations_use_messages():
    df = build_prompts(PairSpec(rows=40, seed=3, multiturn_fraction=1.0)).rename(columns={"prompt": "user"})
    assert conversations_for(df) == [json.loads(m) for m in df["messages"]]
    plain = conversations_for(df.drop(columns=["messages"]))
    assert all(len(c) == 1 for c in plain)
