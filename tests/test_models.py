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


def test_embedded_model_is_prepared_once_per_machine_then_copied(tmp_path, monkeypatch, tiny_model_dir):
    """The cache keeps the dequantized folder; a second workflow copies it; a half-written or stale entry
    (no marker, another key) is prepared again. prepare_embedded is stood in by a copy of the tiny model."""
    import shutil

    from rulebound import models

    calls = []

    def fake_prepare(name, out_dir):
        calls.append(name)
        shutil.copytree(tiny_model_dir, out_dir, dirs_exist_ok=True)

    monkeypatch.setenv("RULEBOUND_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "prepare_embedded", fake_prepare)
    first, second = tmp_path / "wf1" / "model", tmp_path / "wf2" / "model"
    prepare_model("embedded:smollm2-135m-instruct", first)
    prepare_model("embedded:smollm2-135m-instruct", second)
    assert calls == ["smollm2-135m-instruct"]
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in second.iterdir()) and models.CACHE_MARKER not in files
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes()
    cached = models.cached_embedded("smollm2-135m-instruct")
    assert cached.parent == tmp_path / "cache" / "models"
    key = json.loads((cached / models.CACHE_MARKER).read_text())
    assert key["gguf_sha256"] and key["transformers"] and key["format"] == models.EMBEDDED_FORMAT

    (cached / models.CACHE_MARKER).unlink()  # killed before the marker: not trusted
    prepare_model("embedded:smollm2-135m-instruct", tmp_path / "wf3" / "model")
    assert len(calls) == 2
    (cached / models.CACHE_MARKER).write_text(json.dumps({**key, "transformers": "0.0.1"}))  # another version
    prepare_model("embedded:smollm2-135m-instruct", tmp_path / "wf4" / "model")
    assert len(calls) == 3 and json.loads((cached / models.CACHE_MARKER).read_text()) == key
    assert not list((tmp_path / "cache" / "models").glob(".*.tmp-*")), "no temporary folder is left"
