"""Model sources: embedded, hub (offline: one clear error) and local folders."""

import json

import pytest

from rulebound.errors import ConfigError, RuleboundError
from rulebound.models import check_model_dir, parse_source, prepare_model


@pytest.mark.parametrize(
    "source, expected",
    [
        ("embedded:smollm2-135m-instruct", ("embedded", "smollm2-135m-instruct")),
        ("hf:meta-llama/Llama-3.2-3B-Instruct", ("hf", "meta-llama/Llama-3.2-3B-Instruct")),
        ("/models/my-llama", ("local", "/models/my-llama")),
    ],
)
def test_parse_source(source, expected):
    assert parse_source(source) == expected


@pytest.mark.parametrize("source", ["embedded:gpt-9", "hf:no-slash", "s3:bucket/model", ""])
def test_bad_sources_are_refused(source):
    with pytest.raises(ConfigError):
        parse_source(source)


def test_embedded_model_has_fixed_tokens_and_byte_level_tokenizer(embedded_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|im_end|>"
    config = json.loads((embedded_model_dir / "config.json").read_text())
    assert config["eos_token_id"] == tokenizer.eos_token_id == 2
    data = json.loads((embedded_model_dir / "tokenizer.json").read_text())
    assert data["model"]["byte_fallback"] is False
    assert data["pre_tokenizer"]["type"] == "ByteLevel" and data["decoder"]["type"] == "ByteLevel"
    text = "Hello, world! Café 123."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False).input_ids) == text


def test_local_folder_is_copied_and_checked(tiny_model_dir, tmp_path):
    out = tmp_path / "local-copy"
    prepare_model(str(tiny_model_dir), out)
    assert (out / "config.json").is_file() and any(out.glob("*.safetensors"))
    check_model_dir(out)


def test_local_folder_without_config_is_refused_and_nothing_is_left(tmp_path):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(RuleboundError, match="not a Hugging Face model folder"):
        prepare_model(str(tmp_path / "empty"), out)
    assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_hub_source_offline_names_the_repo_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    with pytest.raises(RuleboundError) as err:
        prepare_model("hf:meta-llama/Llama-3.2-3B-Instruct", tmp_path / "llama")
    message = str(err.value)
    assert "hf:meta-llama/Llama-3.2-3B-Instruct" in message and "hf download meta-llama/Llama-3.2-3B-Instruct" in message
    assert not (tmp_path / "llama").exists()
