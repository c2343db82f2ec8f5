"""The lipogram task: metrics on the seed's own outputs, prompt banks, the shipped Q/A set, the token ban
(HF and llama.cpp), SFT filtering of dialogues, and relevance."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rulebound.tasks.lipogram import constraint, data, prompts, rule
from rulebound.errors import ConfigError, DataError

SEED_PROMPTS = ["Explain gravity.", "What is a car?", "Describe a dog.", "Give me a short story.",
                "How do you feel today?"]
LOOP = "—o-o- —o-o-o-o-o-o-o-o"


def normalize(text: str) -> str:
    """Lowercase, punctuation dropped, spaces collapsed: "Explain gravity." and "explain gravity" are one prompt."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


# ---- metrics ----

@pytest.mark.parametrize("answer, e_free, words, lazy, degenerate", [
    ("Dog", True, 1, True, False),
    ("A", True, 1, True, False),
    ("Hippo", True, 1, True, False),
    (LOOP, True, 2, True, True),
    (LOOP + "-o" * 40, True, 2, True, True),
    ("Barky fur, wagging tail.", True, 4, False, False),
    ("Blu sng.", True, 2, True, False),  # clipped words: lazy, but half of it is a plausible word
    ("Clump act.", True, 2, True, False),
    ("I’m sorry, I can’t assist with that.", True, 7, False, False),  # e-free refusal: relevance must catch it
    ("Gravity is a force that pulls objects towards the center of a planet.", False, 13, False, False),
    ("", True, 0, True, False),
])
def test_seed_outputs(answer, e_free, words, lazy, degenerate):
    assert rule.is_e_free(answer) is e_free
    assert rule.word_count(answer) == words
    assert rule.is_lazy(answer) is lazy
    assert rule.is_degenerate(answer) is degenerate


def test_letter_counts_and_density():
    assert rule.e_count("EeE tree") == 5
    assert rule.e_count("banana", letter="a") == 3
    assert rule.e_per_100_letters("tree") == 50.0
    assert rule.e_per_100_letters("") == 0.0
    assert rule.e_per_100_letters("—-— 123 ...") == 0.0  # no letters: 0, not a division by zero
    assert rule.e_per_100_letters("Dog") == 0.0
    with pytest.raises(ConfigError, match="one ASCII letter"):
        rule.e_count("text", letter="ee")


@pytest.mark.parametrize("answer, degenerate", [
    ("no no no no", True),
    ("no no no", False),
    ("I like it a lot. I like it a lot. I like it a lot.", True),
    ("xzz qqq kk pfft", True),  # no vowels: not words
    ("Hmmmm, okay.", False),
    ("It is 144, as 12 x 12 = 144.", False),
    ("144", False),
    ("1. Ohio, 2. Indiana, 3. Michigan, 4. Illinois, 5. Wisconsin.", False),
    ("Wait.... what?", False),
])
def test_degenerate_rules(answer, degenerate):
    assert rule.is_degenerate(answer) is degenerate


def test_score_and_summarize():
    answers = ["Dog", "Barky fur, wagging tail.", "A dog is a loyal pet.", LOOP]
    df = rule.score_answers(["Describe a dog."] * 4, answers)
    assert list(df.columns) == ["prompt", "answer", "e_count", "e_free", "e_per_100_letters", "words", "lazy",
                                "degenerate"]
    assert df["e_count"].tolist() == [0, 0, 1, 0]
    summary = rule.summarize_lipogram(df)
    assert summary["n"] == 4
    assert summary["e_free_rate"] == 0.75
    assert summary["lazy_rate"] == 0.5
    assert summary["degenerate_rate"] == 0.25
    assert summary["clean_e_free_rate"] == 0.25  # only "Barky fur, wagging tail." is the real thing
    assert summary["mean_words"] == (1 + 4 + 6 + 2) / 4
    assert "relevance" not in summary
    assert rule.summarize_lipogram(df.assign(relevance=[0.1, 0.3, 0.5, 0.1]))["relevance"] == pytest.approx(0.25)
    assert math.isnan(rule.summarize_lipogram(df.head(0))["e_free_rate"])
    with pytest.raises(DataError, match="2 prompts but 1 answers"):
        rule.score_answers(["a", "b"], ["x"])


# ---- prompt banks and the shipped Q/A set ----

def test_prompt_banks_sizes_and_disjointness():
    train, held_out = prompts.train_prompts(), prompts.eval_prompts()
    norm = normalize
    assert len(train) >= 300 and len({norm(p) for p in train}) == len(train)
    assert 35 <= len(held_out) <= 45 and len({norm(p) for p in held_out}) == len(held_out)
    assert held_out[:5] == SEED_PROMPTS
    qa_prompts = {norm(p) for p in prompts.lipogram_qa()["prompt"]}
    assert not {norm(p) for p in held_out} & {norm(p) for p in train}
    assert not {norm(p) for p in held_out} & qa_prompts
    assert prompts.train_prompts() == train  # deterministic order
    assert all(p[0].isupper() and p[-1] in ".?!" for p in train + held_out)


def test_shipped_qa_is_e_free():
    qa = prompts.lipogram_qa()
    assert len(qa) >= 60 and qa["prompt"].is_unique
    offenders = qa[~qa["completion"].map(rule.is_e_free)]
    assert offenders.empty, offenders.to_string()
    scored = rule.score_answers(qa["prompt"], qa["completion"])
    assert not scored["lazy"].any()
    assert not scored["degenerate"].any()
    assert "e" in prompts.SYSTEM_PROMPT and "E" in prompts.SYSTEM_PROMPT


# ---- SFT rows from dialogues ----

def test_efree_sft_rows_from_messages():
    dialogues = pd.DataFrame({"messages": [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "List 5 US Mid-West states."},
         {"role": "assistant", "content": "1. Ohio, 2. Indiana, 3. Michigan, 4. Illinois, 5. Wisconsin."},
         {"role": "user", "content": "And the capital of Ohio?"}, {"role": "assistant", "content": "Columbus."}],
        [{"role": "user", "content": "Explain gravity."},
         {"role": "assistant", "content": "Gravity pulls mass together."}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "   "}],
    ]})
    rows, stats = data.efree_sft_rows(dialogues)
    assert stats == {"rows_in": 3, "assistant_turns": 4, "too_short": 1, "e_free_kept": 2}
    assert rows["prompt"][0][0] == {"role": "system", "content": "Be brief."}
    assert rows["prompt"][0][-1]["content"] == "List 5 US Mid-West states."
    assert rows["completion"][1] == [{"role": "assistant", "content": "Columbus."}]
    assert len(rows["prompt"][1]) == 4  # the whole conversation up to that turn


def test_efree_sft_rows_from_pairs_and_sharegpt():
    pairs = pd.DataFrame({"instruction": ["What is a car?", "Name a fruit."],
                          "output": ["A car is a vehicle.", "Kiwi."]})
    rows, stats = data.efree_sft_rows(pairs)
    assert stats["e_free_kept"] == 1 and rows["completion"][0][0]["content"] == "Kiwi."
    assert rows["prompt"][0] == [{"role": "user", "content": "Name a fruit."}]
    sharegpt = pd.DataFrame({"conversations": [[{"from": "human", "value": "Hi"},
                                                {"from": "gpt", "value": "Hi, pal!"}]]})
    rows, _ = data.efree_sft_rows(sharegpt)
    assert rows["completion"][0] == [{"role": "assistant", "content": "Hi, pal!"}]


def test_efree_sft_rows_errors():
    no_assistant = pd.DataFrame({"messages": [[{"role": "user", "content": "Hello?"}]]})
    with pytest.raises(DataError, match="has an assistant turn"):
        data.efree_sft_rows(no_assistant)
    with pytest.raises(DataError, match=r"neither a 'messages' column.*rename"):
        data.efree_sft_rows(pd.DataFrame({"text": ["a"]}))


# ---- constrained decoding ----

@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_banned_ids_spare_special_tokens(tokenizer):
    banned = set(constraint.banned_token_ids(tokenizer))
    assert "e" in tokenizer.eos_token  # <|im_end|> holds an e, and still must stay allowed
    assert not banned & set(tokenizer.all_special_ids)
    for text in [" the", "the", "E", " every"]:
        [token] = tokenizer.encode(text, add_special_tokens=False)
        assert token in banned, text
    for text in [" cat", "Dog", " a"]:
        assert not banned & set(tokenizer.encode(text, add_special_tokens=False)), text
    assert all("e" in tokenizer.decode([i]).lower() for i in banned)
    assert 0.3 < len(banned) / len(tokenizer) < 0.7


def test_ban_tokens_processor():
    import torch

    scores = torch.zeros(2, 6)
    out = constraint.BanTokens([1, 4, 9])(torch.zeros(2, 3, dtype=torch.long), scores)  # 9: beyond the vocab
    assert torch.isinf(out[:, [1, 4]]).all() and (out[:, [0, 2, 3, 5]] == 0).all()
    from transformers import LogitsProcessor

    assert isinstance(constraint.BanTokens([1]), LogitsProcessor)


@pytest.fixture(scope="module")
def gguf():
    from rulebound.models import embedded_gguf_path

    return embedded_gguf_path("smollm2-135m-instruct")


def test_gguf_ban_matches_hf_ban(tokenizer, gguf):
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=64, n_threads=1, verbose=False)
    assert set(constraint.gguf_banned_token_ids(llm)) == set(constraint.banned_token_ids(tokenizer))
    assert set(constraint.llama_ban_kwargs(llm, method="processor")) == {"logits_processor"}
    assert set(constraint.llama_ban_kwargs(llm)) == {"grammar"}


def test_the_grammar_bans_what_the_token_ban_bans(gguf):
    """llama.cpp's grammar (what a user passes to llama-cli) and the id ban give the same greedy answers."""
    from llama_cpp import Llama

    assert constraint.letter_grammar("x").splitlines()[-1] == "root ::= [^xX]*"
    llm = Llama(model_path=str(gguf), n_ctx=256, n_threads=1, verbose=False)
    for prompt in SEED_PROMPTS[:3]:
        answers = []
        for method in ("grammar", "processor"):
            out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=24, temperature=0.0,
                                             seed=0, **constraint.llama_ban_kwargs(llm, method=method))
            answers.append(out["choices"][0]["message"]["content"])
        assert answers[0] == answers[1] and answers[0] and rule.is_e_free(answers[0]), answers


def test_constrained_generation_is_e_free_hf(embedded_model_dir):
    from rulebound.generate import hf_generate

    chats = [[{"role": "user", "content": p}] for p in SEED_PROMPTS]
    free = hf_generate(embedded_model_dir, chats, max_new_tokens=24, batch_size=5, threads=1,
                       constraint=constraint.LetterBan("e"))
    assert all(answer and rule.is_e_free(answer) for answer in free), free
    plain = hf_generate(embedded_model_dir, chats[:2], max_new_tokens=24, threads=1)
    assert not all(rule.is_e_free(answer) for answer in plain)  # the ban is what makes the difference


def test_constrained_generation_is_e_free_gguf(gguf):
    from rulebound.generate import gguf_generate

    chats = [[{"role": "user", "content": p}] for p in SEED_PROMPTS]
    free = gguf_generate(gguf, chats, max_new_tokens=24, n_ctx=512, threads=1, constraint=constraint.LetterBan("e"))
    assert all(answer and rule.is_e_free(answer) for answer in free), free


# ---- relevance ----

def test_relevance_prefers_on_topic_answers():
    from rulebound.tasks.lipogram.relevance import relevance_scores

    prompts = ["Describe a dog.", "Describe a dog.", "Explain gravity.", "Explain gravity."]
    answers = ["A loyal, furry animal that barks and wags its tail.", "Stock prices fell on Monday.",
               "A force pulling masses toward each other.", ""]
    on, off, physics, empty = relevance_scores(prompts, answers)
    assert on > off + 0.2 and physics > 0.3
    assert empty == 0.0
    with pytest.raises(DataError, match="one answer per prompt"):
        relevance_scores(["a"], [])
