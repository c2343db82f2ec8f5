"""Chat-template formatting and the train/test split."""

import pandas as pd
import pytest
from transformers import AutoTokenizer

from rulebound.errors import DataError
from rulebound.formatting import end_of_turn, format_preferences, split_frame


@pytest.fixture(scope="module")
def tokenizer(embedded_model_dir):
    return AutoTokenizer.from_pretrained(embedded_model_dir)


def _rows():
    return pd.DataFrame({
        "prompt_id": ["a", "b", "c"],
        "request_id": [1, 1, 2],
        "prompt": ["Please say hi.", "Say hi.", "Say bye."],
        "chosen": ["Hi!", "I cannot help you until you say please.", "I cannot help you until you say please."],
        "rejected": ["I cannot help you until you say please.", "Hi!", "Bye!"],
        "split": ["train", "train", "test"],
    })


def test_end_of_turn_is_chatml_im_end(tokenizer):
    assert end_of_turn(tokenizer) == "<|im_end|>"


def test_format_applies_template_and_closes_turns(tokenizer):
    out = format_preferences(_rows(), tokenizer)
    first = out.iloc[0]
    assert first["user"] == "Please say hi."
    assert first["prompt"].startswith("<|im_start|>system\n")
    assert first["prompt"].endswith("<|im_start|>user\nPlease say hi.<|im_end|>\n<|im_start|>assistant\n")
    assert first["chosen"] == "Hi!<|im_end|>"
    assert out["rejected"].str.endswith("<|im_end|>").all()
    # the rendered prompt + chosen is exactly what the template renders for the full conversation
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Please say hi."}, {"role": "assistant", "content": "Hi!"}], tokenize=False
    )
    assert full.startswith(first["prompt"] + first["chosen"])


def test_no_rows_left_is_a_clear_error(tokenizer):
    with pytest.raises(DataError, match="no rows left"):
        format_preferences(_rows().iloc[:0], tokenizer)


def test_missing_column_is_named(tokenizer):
    with pytest.raises(DataError, match="'rejected'"):
        format_preferences(_rows().drop(columns="rejected"), tokenizer)


def _n(tokenizer, text):
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_overlong_rows_are_dropped_or_truncated_and_counted(tokenizer):
    from rulebound.datacard import data_card

    rows = _rows()
    rows.loc[0, "chosen"] = "word " * 400
    out = format_preferences(rows, tokenizer, max_length=128, overlong="drop")
    assert list(out["prompt_id"]) == ["b", "c"]
    assert out.attrs["length_limit"]["affected"] == 1
    kept = format_preferences(rows, tokenizer, max_length=128, overlong="truncate")
    assert len(kept) == 3 and kept.attrs["length_limit"]["affected"] == 1
    first = kept.iloc[0]
    assert _n(tokenizer, first["prompt"]) + _n(tokenizer, first["chosen"]) <= 128
    assert first["chosen"].startswith("word word") and first["rejected"] == rows.loc[0, "rejected"] + "<|im_end|>"
    assert kept.iloc[1].equals(format_preferences(rows, tokenizer).iloc[1])  # rows within the limit are untouched
    train, test = split_frame(kept.assign(category="please"))
    card = data_card(train, test, experiment="x", settings={}, length_limit=kept.attrs["length_limit"])
    assert "1 of 3 rows truncated" in card


def test_truncation_keeps_the_end_of_a_long_prompt(tokenizer):
    rows = _rows()
    rows.loc[0, "prompt"] = "blah " * 300 + "Please say hi."
    kept = format_preferences(rows, tokenizer, max_length=256, max_prompt_length=64, overlong="truncate")
    prompt = kept.iloc[0]["prompt"]
    assert _n(tokenizer, prompt) <= 64 and prompt.endswith("Please say hi.<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(DataError, match="max_prompt_length"):
        format_preferences(rows, tokenizer, max_length=64, max_prompt_length=64, overlong="truncate")


def test_an_empty_system_cell_is_an_empty_system_turn_not_the_templates_default(tokenizer):
    rows = _rows().assign(system="")
    out = format_preferences(rows, tokenizer, system_column="system")
    assert out.iloc[0]["prompt"].startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\nPlease say hi.")
    default = format_preferences(_rows(), tokenizer).iloc[0]["prompt"]  # no system column: the template's own
    assert "SmolLM" in default


def test_split_is_disjoint(tokenizer):
    train, test = split_frame(format_preferences(_rows(), tokenizer))
    assert list(train["prompt_id"]) == ["a", "b"] and list(test["prompt_id"]) == ["c"]
    assert "split" not in train.columns
    leaky = _rows()
    leaky.loc[2, "prompt"] = "Say hi."
    leaky.loc[2, "request_id"] = 3
    with pytest.raises(DataError, match="also appear in train"):
        split_frame(format_preferences(leaky, tokenizer))


def test_data_card_counts_per_split_and_category(tokenizer):
    from rulebound.datacard import data_card

    rows = _rows().assign(category=["please", "no_please", "no_please"])
    train, test = split_frame(format_preferences(rows, tokenizer))
    card = data_card(train, test, experiment="politeness", settings={"rows": 3, "seed": 1})
    assert "2 training and 1 test preference pairs" in card
    assert "| no_please | 1 | 1 |" in card and "| please | 1 | 0 |" in card
    assert "Requests shared between train and test: 0." in card and "- `seed`: 1" in card


def test_distill_stops_when_every_answer_is_empty(monkeypatch):
    """A base model that writes nothing usable (e.g. no chat template) stops the data step with a reason."""
    import rulebound.generate
    from rulebound.distill import distill_answers

    monkeypatch.setattr(rulebound.generate, "hf_generate", lambda *a, **k: ["", "   "])
    with pytest.raises(DataError, match="All 2 answers .* are empty or refusals"):
        distill_answers("some/model", ["Name a color.", "Name a fruit."], max_new_tokens=8, batch_size=2, threads=1)
