"""GRPO rewards: the seed's formulas, and specs that fail at resolve time rather than mid-training."""

from __future__ import annotations

import pytest

from rulebound.errors import ConfigError
from rulebound.rewards import available, complete_sentence, length_curriculum, resolve_rewards, short_penalty
from rulebound.tasks.lipogram.rewards import no_e, on_topic, topic_words

SEED_OUTPUTS = ["Dog", "A", "Hippo", "Barky fur, wagging tail.", "Blu sng."]


def test_no_e_is_the_seed_reward():
    assert no_e(SEED_OUTPUTS) == [3.0] * 5
    assert no_e(["Hello there", "EeE", ""]) == [-4.5, -4.5, 3.0]  # -1.5 per e, either case
    assert no_e(["tree", "cat"], reward_free=1.0, penalty_per_e=-0.5) == [-1.0, 1.0]


def test_short_penalty_under_five_characters():
    assert short_penalty(["Dog", "A", "Hippo", "  Dog  ", ""]) == [-2.0, -2.0, 0.0, -2.0, -2.0]
    assert short_penalty(["Hippo"], min_chars=6, penalty=-1.0) == [-1.0]


def test_length_curriculum_follows_the_seed_ramp():
    barky = "Barky fur, wagging tail."  # 24 characters
    # start: target 10; short answers pay their relative shortfall, long ones 1.5 + length / 100
    assert length_curriculum(["Dog", barky]) == pytest.approx([(3 - 10) / 10, 1.5 + 24 / 100])
    # end of training: target 10 + 60 = 70, so the same answer now falls short
    assert length_curriculum([barky], progress=1.0) == pytest.approx([(24 - 70) / 70])
    assert length_curriculum([barky], progress=0.5, start_len=4, ramp=20) == pytest.approx([1.74])
    assert length_curriculum(["   " + barky + "\n"]) == length_curriculum([barky])  # length of the stripped text


@pytest.mark.parametrize("params", [{"ramp": 0}, {"ramp": -5}, {"start_len": 0}])
def test_length_curriculum_rejects_degenerate_ramps(params):
    with pytest.raises(ConfigError, match="start_len > 0 and ramp > 0"):
        length_curriculum(["x"], **params)
    with pytest.raises(ConfigError, match="ramp"):
        resolve_rewards([{"name": "length_curriculum", **params}])  # before training, not at step 1


def test_resolve_binds_parameters():
    resolved = resolve_rewards(["no_e", {"name": "length_curriculum", "start_len": 20, "ramp": 40}, "short_penalty"])
    assert [name for name, _ in resolved] == ["no_e", "length_curriculum", "short_penalty"]
    _, curriculum = resolved[1]
    assert curriculum(["Dog"], 0.5) == pytest.approx([(3 - 40) / 40])
    assert curriculum(["Dog"], 0.5) == length_curriculum(["Dog"], progress=0.5, start_len=20, ramp=40)
    assert resolved[0][1](SEED_OUTPUTS, 0.0) == [3.0] * 5
    # the shape rewards, and the lipogram's and the constitution's own (the registry collects every task's)
    assert set(available()) == {"no_e", "short_penalty", "length_curriculum", "no_repeat", "complete_sentence",
                                "on_topic", "constitution"}


def test_no_e_bans_the_configured_letter():
    assert no_e(["Hello", "cat", "TAXI"], letter="x") == [3.0, 3.0, -1.5]
    with pytest.raises(ConfigError, match="one letter"):
        no_e(["x"], letter="ab")


def test_complete_sentence_pays_for_an_ending():
    assert complete_sentence(["Barky fur, wagging tail.", "a light, a light, a", "Is it?", "Go!  "]) == \
        [1.0, -1.0, 1.0, 1.0]


def test_on_topic_counts_the_prompts_words_the_answer_keeps():
    assert topic_words("Describe a dog.") == ["dog"]
    assert topic_words("Tell me about a tornado.") == ["tornado"]
    assert topic_words("Give me a short story about a lost key.") == ["lost"]  # "key" holds the letter
    assert topic_words("How are you?") == []
    prompts = ["Describe a dog.", "Describe a dog.", "Tell me about a tornado.", "How are you?"]
    answers = ["Barky fur, wagging tail: a dog.", "Hippo", "A tornadic wind spins.", "Fine."]
    assert on_topic(answers, prompts=prompts) == [1.0, 0.0, 1.0, 0.0]  # "tornadic" shares "torna"
    assert on_topic(answers[:1], prompts=prompts[:1], weight=2.5) == [2.5]


def test_a_reward_that_reads_prompts_gets_them_bound():
    (_, topic), = resolve_rewards([{"name": "on_topic", "weight": 2.0}])
    assert topic(["A dog naps."], 0.3, prompts=["Describe a dog."]) == [2.0]
    with pytest.raises(ValueError, match="reads the prompts"):
        topic(["A dog naps."], 0.3)
    (_, plain), = resolve_rewards(["no_e"])
    assert plain(["A dog naps."], 0.3, prompts=["ignored"]) == [3.0]  # rewards without prompts ignore them


def test_unknown_reward_lists_the_available_ones():
    available_first = r"Unknown reward 'no_f'; available rewards: constitution, no_e, on_topic, short_penalty, length_curriculum"
    with pytest.raises(ConfigError, match=available_first):
        resolve_rewards(["no_f"])


def test_unknown_parameter_names_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"'no_e'.*penalty_per_eee.*reward_free, penalty_per_e"):
        resolve_rewards([{"name": "no_e", "penalty_per_eee": -2}])


@pytest.mark.parametrize("spec", [3, {"ramp": 60}, {"name": 5}])
def test_malformed_specs(spec):
    with pytest.raises(ConfigError, match="neither a name nor a mapping"):
        resolve_rewards([spec])


def test_bad_parameter_value_fails_at_resolve():
    with pytest.raises(ConfigError, match="fails on a probe"):
        resolve_rewards([{"name": "short_penalty", "min_chars": "five"}])


def test_dotted_path_rewards(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(
        "def exclaim(completions, *, progress=0.0, bonus=1.0):\n"
        "    return [bonus * c.count('!') for c in completions]\n"
        "def broken(completions, *, progress=0.0):\n"
        "    return [1.0]\n"
        "NOT_A_FUNCTION = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    [(name, reward)] = resolve_rewards([{"name": "my_rewards:exclaim", "bonus": 2.0}])
    assert name == "exclaim"
    assert reward(["Hi!!", "Hi"], 0.3) == [4.0, 0.0]
    assert resolve_rewards(["rulebound.tasks.lipogram.rewards:no_e"])[0][1](["tree"], 0.0) == [-3.0]
    with pytest.raises(ConfigError, match="one finite number per completion"):
        resolve_rewards(["my_rewards:broken"])
    with pytest.raises(ConfigError, match="not a function"):
        resolve_rewards(["my_rewards:NOT_A_FUNCTION"])
    with pytest.raises(ConfigError, match=r"cannot be imported.*no_such_module"):
        resolve_rewards(["no_such_module:fn"])
    with pytest.raises(ConfigError, match=r"cannot be imported.*defines missing"):
        resolve_rewards(["my_rewards:missing"])


def test_rewards_must_be_a_list():
    with pytest.raises(ConfigError, match="must be a list"):
        resolve_rewards("no_e")


def test_no_e_penalty_ramp_grows_to_the_seed_penalty():
    assert no_e(["eee"], progress=0.0, ramp_from=0.2) == [pytest.approx(-0.9)]
    assert no_e(["eee"], progress=1.0, ramp_from=0.2) == [-4.5]
    assert no_e(["abc"], progress=0.0, ramp_from=0.2) == [3.0]
    with pytest.raises(ConfigError, match="ramp_from"):
        no_e(["x"], ramp_from=0.0)


def test_no_repeat_scales_with_the_share_of_repeated_ngrams():
    from rulebound.rewards import no_repeat

    distinct, loop, short = no_repeat(["A small dog with dark fur.", "a fluffy, a fluffy, a fluffy, a fluffy", "Hi"])
    assert distinct == 0.0 and short == 0.0
    # bigrams: (a fluffy) x4, (fluffy a) x3 -> 2 distinct of 7
    assert loop == pytest.approx(-3.0 * (1 - 2 / 7))
    with pytest.raises(ConfigError, match="n must be at least 1"):
        no_repeat(["x"], n=0)
