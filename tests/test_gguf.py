"""GGUF export: fetching llama.cpp's converters, F16 conversion, quantization and the GGUF checks."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path

import pytest
import yaml

from rulebound.export import gguf as rgguf
from rulebound.errors import ConfigError, RuleboundError
from rulebound.export.gguf import (QUANT_TYPES, check_gguf, check_gguf_or_remove, convert_hf_to_gguf, convert_lora_to_gguf,
                            fetch_llama_cpp, quantize_gguf)

REPO = Path(__file__).resolve().parents[1]
CHATML = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture(scope="session")
def llama_cpp_dir(tmp_path_factory) -> Path:
    """The converters from the pinned sdist; the tarball is downloaded once into the user cache."""
    pin = yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]
    return fetch_llama_cpp(pin["version"], pin["sha256"], tmp_path_factory.mktemp("resources") / "llama-cpp")


@pytest.fixture(scope="module")
def tiny_f16(tmp_path_factory, tiny_model_dir, llama_cpp_dir) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny-F16.gguf"
    return convert_hf_to_gguf(tiny_model_dir, out, llama_cpp_dir)


def fake_sdist(path: Path, version: str = "1.2.3") -> str:
    """A miniature llama-cpp-python sdist that pip can read (a setuptools project); returns its sha256."""
    files = {
        "pyproject.toml": ('[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                           f'[project]\nname = "llama-cpp-python"\nversion = "{version}"\n'
                           '[tool.setuptools]\npackages = ["llama_cpp"]\n'),
        "vendor/llama.cpp/convert_hf_to_gguf.py": "print('hf')",
        "vendor/llama.cpp/convert_lora_to_gguf.py": "print('lora')",
        "vendor/llama.cpp/conversion/__init__.py": "",
        "vendor/llama.cpp/gguf-py/gguf/__init__.py": "",
        "vendor/llama.cpp/ggml/src/ggml.c": "int main;",
        "llama_cpp/__init__.py": "",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"llama_cpp_python-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthetic_gguf(path: Path, *, eos: int = 2, template: str | None = CHATML) -> Path:
    """A tensor-less GGUF with a ChatML-style vocabulary, for the metadata checks."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)  # enough hyperparameters for llama.cpp to load the vocabulary alone
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "H", "e", "He"])
    writer.add_token_types([3, 3, 3, 1, 1, 1])
    writer.add_token_merges(["H e"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(eos)
    if template:
        writer.add_chat_template(template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --------------------------------------------------------------------------- fetch


@pytest.fixture
def local_index(tmp_path, monkeypatch) -> Path:
    """pip resolves llama-cpp-python from a local folder only (no index, no network, no isolated build env)."""
    links = tmp_path / "links"
    links.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip's inverted switch: build with the installed setuptools
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    return links


def test_fetch_sha_mismatch_keeps_nothing(local_index, tmp_path):
    fake_sdist(local_index / "llama_cpp_python-1.2.3.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(RuleboundError, match="sha256 mismatch.*pip download"):
        fetch_llama_cpp("1.2.3", "0" * 64, tmp_path / "src", cache_dir=cache)
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")] and not (tmp_path / "src").exists()
    assert not list(cache.glob(".pip-download-*"))  # the download folder is gone too


def test_fetch_uses_pip_then_the_cache(local_index, tmp_path, caplog):
    sha = fake_sdist(local_index / "llama_cpp_python-1.2.3.tar.gz")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "llama_cpp_python-1.2.3.tar.gz").write_bytes(b"stale")  # a corrupt cached copy is replaced, not trusted
    with caplog.at_level(logging.INFO):
        src = fetch_llama_cpp("1.2.3", sha, tmp_path / "src", cache_dir=cache)
    assert "with pip: " in caplog.text and "pip download llama-cpp-python==1.2.3 --no-binary :all: --no-deps" in caplog.text
    assert "llama-cpp-python 1.2.3 but 0.3.36 is installed" in caplog.text  # version skew is flagged
    assert (src / "convert_hf_to_gguf.py").is_file() and (src / "gguf-py/gguf/__init__.py").is_file()
    assert not (src / "ggml").exists() and not (src / "llama_cpp").exists()
    assert json.loads((src / "SOURCE.json").read_text()) == {"sdist": "llama_cpp_python-1.2.3.tar.gz", "sha256": sha,
                                                            "version": "1.2.3"}

    for f in local_index.iterdir():
        f.unlink()  # the second fetch must come from the cache
    again = fetch_llama_cpp("1.2.3", sha.upper(), tmp_path / "src2", cache_dir=cache)
    assert (again / "convert_lora_to_gguf.py").read_text() == "print('lora')"


def test_fetch_offline_falls_back_to_pips_cache(local_index, tmp_path, monkeypatch):
    from rulebound.export import gguf as export_gguf

    monkeypatch.setattr(export_gguf, "PIP_CACHE_MIN_BYTES", 0)  # the real sdist is 76 MB; this fake is tiny
    blob = tmp_path / "pip-cache" / "http-v2" / "a" / "b" / "0123abcd.body"  # how pip keeps a downloaded file
    blob.parent.mkdir(parents=True)
    sha = fake_sdist(blob)
    (blob.parent / "other.body").write_bytes(b"\x1f\x8b not the sdist")
    src = fetch_llama_cpp("1.2.3", sha, tmp_path / "src", cache_dir=tmp_path / "cache")  # pip finds no link
    assert (src / "convert_hf_to_gguf.py").is_file()
    assert (tmp_path / "cache" / "llama_cpp_python-1.2.3.tar.gz").is_file() and blob.is_file()  # copied, not moved


def test_fetch_offline_says_what_to_do(local_index, tmp_path):
    with pytest.raises(RuleboundError, match="Could not fetch the llama-cpp-python 0.3.36 sdist") as err:
        fetch_llama_cpp("0.3.36", "0" * 64, tmp_path / "src", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "pip download llama-cpp-python==0.3.36 --no-binary :all: --no-deps" in message
    assert str(tmp_path / "cache" / "llama_cpp_python-0.3.36.tar.gz") in message


def test_fetched_sdist_has_the_converters(llama_cpp_dir):
    assert json.loads((llama_cpp_dir / "SOURCE.json").read_text())["version"] == "0.3.36"
    for rel in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/llama.py", "gguf-py/gguf/vocab.py"):
        assert (llama_cpp_dir / rel).is_file(), rel


# --------------------------------------------------------------------------- convert, quantize, check


def test_convert_f16_passes_check(tiny_f16):
    info = check_gguf(tiny_f16)
    assert info["architecture"] == "llama" and info["file_type"] == "F16"
    assert info["eos_token"] == info["end_of_turn_token"] == "<|im_end|>"
    assert "<|im_start|>" in info["chat_template"]
    assert info["size_bytes"] == tiny_f16.stat().st_size
    assert not [p for p in tiny_f16.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_K_M"])
def test_quantize(tmp_path, tiny_f16, quant):
    out = quantize_gguf(tiny_f16, tmp_path / f"tiny-{quant}.gguf", quant, threads=2)
    info = check_gguf_or_remove(out, quant=quant)
    assert info["file_type"] == quant and info["eos_token"] == "<|im_end|>"
    assert out.stat().st_size < tiny_f16.stat().st_size - 2_500_000  # 6.3 MB of F16 embeddings shrink


def test_quantize_refuses_bad_requests(tmp_path, tiny_f16):
    size = tiny_f16.stat().st_size
    with pytest.raises(ConfigError, match="overwrite its input"):
        quantize_gguf(tiny_f16, tiny_f16.parent / "x" / ".." / tiny_f16.name, "Q8_0")
    assert tiny_f16.stat().st_size == size
    with pytest.raises(ConfigError, match="Q4_K_M") as err:
        quantize_gguf(tiny_f16, tmp_path / "out.gguf", "Q3_XYZ")
    assert all(name in str(err.value) for name in QUANT_TYPES)
    q8 = quantize_gguf(tiny_f16, tmp_path / "q8.gguf", "Q8_0")
    with pytest.raises(RuleboundError, match="requantiz"):
        quantize_gguf(q8, tmp_path / "q4.gguf", "Q4_0")
    assert not (tmp_path / "q4.gguf").exists()


def test_quant_types_match_llama_cpp():
    import llama_cpp

    for name, ftype in QUANT_TYPES.items():
        assert getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}") == ftype


def test_check_fails_without_chat_template(tmp_path):
    path = synthetic_gguf(tmp_path / "no-template.gguf", template=None)
    with pytest.raises(RuleboundError, match="no chat template"):
        check_gguf(path)
    with pytest.raises(RuleboundError):
        check_gguf_or_remove(path)
    assert not path.exists()


def test_check_fails_on_wrong_eos(tmp_path):
    path = synthetic_gguf(tmp_path / "wrong-eos.gguf", eos=0)
    with pytest.raises(RuleboundError, match=r"eos is '<\|endoftext\|>'.*'<\|im_end\|>'.*not stop generating"):
        check_gguf(path)


def test_check_fails_when_turns_end_in_plain_text(tmp_path):
    template = CHATML.replace("'<|im_end|>'", "'END'")
    with pytest.raises(RuleboundError, match="'END"):
        check_gguf(synthetic_gguf(tmp_path / "plain-end.gguf", template=template))


def test_check_fails_when_tokenizer_does_not_round_trip(tmp_path):
    # Byte-level BPE without the byte symbols: llama.cpp silently drops what it cannot encode.
    with pytest.raises(RuleboundError, match="does not round-trip text"):
        check_gguf(synthetic_gguf(tmp_path / "broken-vocab.gguf"))


def test_llama_cpp_crash_becomes_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rgguf, "_VOCAB_CHECK_CODE", "import os; os.abort()")
    with pytest.raises(RuleboundError, match=r"crashed \(signal 6\)"):
        check_gguf(synthetic_gguf(tmp_path / "ok.gguf"))


def test_gguf_chats_in_llama_cpp(tiny_f16):
    from llama_cpp import Llama

    llm = Llama(model_path=str(tiny_f16), n_ctx=256, verbose=False)
    out = llm.create_chat_completion(messages=[{"role": "user", "content": "Hello"}], temperature=0, max_tokens=8)
    choice = out["choices"][0]
    assert isinstance(choice["message"]["content"], str) and out["usage"]["completion_tokens"] > 0
    assert choice["finish_reason"] in {"stop", "length"}


def test_convert_lora_adapter(tmp_path, tiny_model_dir, tiny_f16, llama_cpp_dir):
    import gguf
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    model.save_pretrained(tmp_path / "adapter")
    out = convert_lora_to_gguf(tmp_path / "adapter", tiny_model_dir, tmp_path / "adapter.gguf", llama_cpp_dir)
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert len(reader.tensors) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)


def test_lora_gguf_on_the_base_gguf_gives_the_merged_models_answers(tmp_path, tiny_model_dir, tiny_f16,
                                                                   llama_cpp_dir):
    """What the pipeline's lora-F16 variant relies on: base GGUF + LoRA GGUF == merged model's GGUF."""
    import numpy as np
    import torch
    from llama_cpp import Llama
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rulebound.export.merge import merge_adapter

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                      task_type="CAUSAL_LM"))
    with torch.no_grad():  # PEFT starts B at zero (a no-op adapter): give it weight, as training would
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    lora = convert_lora_to_gguf(tmp_path / "adapter", tiny_model_dir, tmp_path / "lora.gguf", llama_cpp_dir)
    merge_adapter(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged", dtype="float16")
    merged = convert_hf_to_gguf(tmp_path / "merged", tmp_path / "merged.gguf", llama_cpp_dir)

    def run(path, **kwargs):
        llm = Llama(model_path=str(path), n_ctx=128, n_threads=1, logits_all=True, verbose=False, **kwargs)
        tokens = llm.tokenize(b"Hello there, how are you today?")
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)])
        reply = llm.create_chat_completion([{"role": "user", "content": "Hello"}], temperature=0, max_tokens=12,
                                           seed=0)["choices"][0]["message"]["content"]
        return logits, reply

    base_logits, _ = run(tiny_f16)
    lora_logits, lora_reply = run(tiny_f16, lora_path=str(lora))
    merged_logits, merged_reply = run(merged)
    assert np.abs(lora_logits - base_logits).max() > 0.1  # the adapter changes the model
    assert np.abs(lora_logits - merged_logits).max() < 2e-2 * max(1.0, np.abs(merged_logits).max())
    assert (lora_logits.argmax(-1) == merged_logits.argmax(-1)).all() and lora_reply == merged_reply


def test_convert_reports_converter_errors(tmp_path, llama_cpp_dir):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"architectures": ["NoSuchModelForCausalLM"]}')
    with pytest.raises(RuleboundError, match="Last output:(.|\n)*NoSuchModel"):
        convert_hf_to_gguf(tmp_path / "model", tmp_path / "x.gguf", llama_cpp_dir)
    assert not (tmp_path / "x.gguf").exists()
