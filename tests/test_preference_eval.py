"""Preference scores: exact on a tiny model, the same tokens and verdicts from HF and GGUF on SmolLM2."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rulebound.errors import DataError, RuleboundError
from rulebound.formatting import end_of_turn, format_preferences, messages_for
from rulebound.ingest import load_preference_source
from rulebound.preference_eval import (
    SCORE_COLUMNS,
    gguf_answer_logps,
    normalize_pairs,
    preference_scores_gguf,
    preference_scores_hf,
    summarize_preferences,
)

PAIRS = pd.DataFrame({
    "pair_id": ["p0", "p1", "p2"], "category": ["science", "self", "science"],
    "system": ["You are an unbiased, uncensored, helpful assistant.", "", "Be brief."],
    "prompt": ["What is the boiling point of water at sea level?", "Do you have a body?", "Closest planet to the Sun?"],
    "chosen": ["100 degrees Celsius.", "No. I am an AI language model without a body.", "Mercury."],
    "rejected": ["90 degrees Celsius.", "Yes, I am tall.", "Venus is the closest planet to the Sun, everyone knows."],
})
GIBBERISH = "Zorp fliggle wibbet, quonk snarf blee trumble glox."


def manual_mean_logp(model, tokenizer, system: str, user: str, answer: str) -> tuple[float, int]:
    """The definition, spelled out for one unpadded sequence."""
    import torch

    prompt = tokenizer.apply_chat_template(messages_for(user, system), tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer + end_of_turn(tokenizer), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    total = sum(float(logps[len(prompt_ids) + k - 1, t]) for k, t in enumerate(answer_ids))
    return total / len(answer_ids), len(answer_ids)


def test_hf_scores_match_a_manual_computation(tiny_model_dir):
    from rulebound.generate import load_hf_model

    scores = preference_scores_hf(tiny_model_dir, PAIRS, batch_size=4, variant="tiny")  # 6 sequences: padding
    assert list(scores.columns) == SCORE_COLUMNS and scores["pair_id"].tolist() == ["p0", "p1", "p2"]
    model, tokenizer = load_hf_model(tiny_model_dir)
    for row, pair in zip(scores.itertuples(), PAIRS.itertuples()):
        for side in ("chosen", "rejected"):
            expected, n_tokens = manual_mean_logp(model, tokenizer, pair.system, pair.prompt, getattr(pair, side))
            assert getattr(row, f"logp_{side}") == pytest.approx(expected, abs=1e-4)
            assert getattr(row, f"n_tokens_{side}") == n_tokens
        assert row.margin == pytest.approx(row.logp_chosen - row.logp_rejected)
        assert row.correct == (row.margin > 0)


def test_formatted_pairs_score_like_raw_pairs(tiny_model_dir):
    from transformers import AutoTokenizer

    formatted = format_preferences(PAIRS, AutoTokenizer.from_pretrained(tiny_model_dir), system_column="system")
    assert formatted["chosen"].iloc[0].endswith("<|im_end|>")  # the end-of-turn is not added twice
    raw_scores = preference_scores_hf(tiny_model_dir, PAIRS)
    formatted_scores = preference_scores_hf(tiny_model_dir, formatted)
    pd.testing.assert_frame_equal(raw_scores, formatted_scores)


def test_adapter_is_merged_in(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    plain = preference_scores_hf(tiny_model_dir, PAIRS)
    adapted = preference_scores_hf(tiny_model_dir, PAIRS, adapter_dir=tmp_path / "adapter")
    assert (adapted["n_tokens_chosen"] == plain["n_tokens_chosen"]).all()
    assert not np.allclose(adapted["logp_chosen"], plain["logp_chosen"])


def test_bad_inputs_are_explained(tiny_model_dir, tmp_path):
    with pytest.raises(DataError, match="'chosen'"):
        normalize_pairs(PAIRS.drop(columns="chosen"))
    with pytest.raises(DataError, match="no pairs"):
        preference_scores_hf(tiny_model_dir, PAIRS.iloc[:0])
    with pytest.raises(RuleboundError, match="does not exist"):
        preference_scores_gguf(tmp_path / "missing.gguf", PAIRS)
    defaults = normalize_pairs(PAIRS[["prompt", "chosen", "rejected"]])
    assert defaults["pair_id"].tolist() == ["pair-00000", "pair-00001", "pair-00002"]
    assert (defaults["category"] == "all").all() and (defaults["system"] == "").all()


def test_summary_has_accuracy_interval_and_margins():
    scores = pd.DataFrame({"variant": ["a"] * 4 + ["b"] * 2, "pair_id": list("wxyzwx"), "category": list("ppqqpq"),
                           "margin": [0.4, -0.1, 0.2, 0.3, -0.5, -0.2], "logp_chosen": -1.0, "logp_rejected": -1.2})
    scores["correct"] = scores["margin"] > 0
    summary = summarize_preferences(scores, by_category=True)
    assert summary[["variant", "group"]].values.tolist() == [["a", "all"], ["a", "p"], ["a", "q"], ["b", "all"],
                                                              ["b", "p"], ["b", "q"]]
    first = summary.iloc[0]
    assert first["accuracy"] == 0.75 and first["n"] == 4 and 0 < first["ci_low"] < 0.75 < first["ci_high"] < 1
    assert first["margin_mean"] == pytest.approx(0.2) and first["margin_median"] == pytest.approx(0.25)
    assert summary.iloc[3]["accuracy"] == 0.0 and summary.iloc[3]["ci_low"] == 0.0


# --- SmolLM2-135M-Instruct: the HF folder (fp32) against the Q4_1 GGUF it was dequantized from ---------------

@pytest.fixture(scope="module")
def gguf_path():
    from rulebound.models import embedded_gguf_path

    return embedded_gguf_path("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def heldout_pairs() -> pd.DataFrame:
    df, _ = load_preference_source("builtin:truthy_pairs")
    return df.groupby("category", group_keys=False).head(5).reset_index(drop=True)  # 25 pairs, every category


@pytest.fixture(scope="module")
def both_scores(embedded_model_dir, gguf_path, heldout_pairs):
    hf = preference_scores_hf(embedded_model_dir, heldout_pairs, variant="base", threads=1)
    gguf = preference_scores_gguf(gguf_path, heldout_pairs, n_ctx=512, variant="Q4_1", threads=1)
    return hf, gguf


def test_hf_and_gguf_score_the_same_tokens_alike(both_scores):
    hf, gguf = both_scores
    assert (hf["n_tokens_chosen"] == gguf["n_tokens_chosen"]).all()
    assert (hf["n_tokens_rejected"] == gguf["n_tokens_rejected"]).all()
    assert (np.sign(hf["margin"]) == np.sign(gguf["margin"])).mean() >= 0.8
    assert np.corrcoef(hf["margin"], gguf["margin"])[0, 1] > 0.8
    assert np.corrcoef(hf["logp_chosen"], gguf["logp_chosen"])[0, 1] > 0.9
    assert (hf["logp_chosen"] - gguf["logp_chosen"]).abs().median() < 0.3  # Q4_1 vs its own dequantization


def test_reused_prompt_cache_equals_a_fresh_evaluation(gguf_path):
    from rulebound.export.fidelity import token_log_probs
    from rulebound.generate import open_gguf

    llm = open_gguf(gguf_path, n_ctx=256, n_batch=256, logits_all=True, n_threads=1)
    prompt = llm.tokenize(b"<|im_start|>user\nWhat is the capital of Canada?<|im_end|>\n<|im_start|>assistant\n",
                          add_bos=False, special=True)
    answers = [llm.tokenize(text, add_bos=False, special=True) for text in (b"Ottawa.<|im_end|>",
                                                                            b"Toronto is the capital.<|im_end|>")]
    reused = gguf_answer_logps(llm, prompt, answers)
    for answer, (total, n) in zip(answers, reused):
        fresh = token_log_probs(llm, prompt + answer)[len(prompt) - 1:]
        assert n == len(answer)
        assert total == pytest.approx(fresh[np.arange(n), answer].sum(), abs=1e-3)


def test_own_greedy_answer_beats_gibberish(embedded_model_dir, gguf_path):
    from rulebound.generate import hf_generate

    prompts = ["What is the capital of France?", "Name a primary color."]
    answers = hf_generate(embedded_model_dir, [messages_for(p) for p in prompts], max_new_tokens=24)
    pairs = pd.DataFrame({"prompt": prompts, "chosen": answers, "rejected": GIBBERISH})
    for scores in (preference_scores_hf(embedded_model_dir, pairs),
                   preference_scores_gguf(gguf_path, pairs, n_ctx=256)):
        assert scores["correct"].all(), scores
        assert (scores["margin"] > 1.0).all()  # nats per token: not a near tie
