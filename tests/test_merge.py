"""merge_adapter: merged weights reproduce the PEFT model, in 16-bit, with tokenizer and chat template."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rulebound.errors import ConfigError, RuleboundError
from rulebound.export.merge import merge_adapter

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir):
    """A LoRA adapter with random (non-zero) B matrices, so merging visibly changes the logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(1)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    out = tmp_path_factory.mktemp("adapters") / "adapter"
    model.save_pretrained(out, safe_serialization=True)
    return out


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_merged_logits_match_peft_model(tmp_path, tiny_model_dir, adapter_dir, dtype):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    merge_adapter(tiny_model_dir, adapter_dir, out, dtype=dtype)

    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Please list three colours."}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    base_logits = logits(base, ids)
    peft_logits = logits(PeftModel.from_pretrained(base, adapter_dir), ids)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert merged.dtype == getattr(torch, dtype)
    merged_logits = logits(merged.float(), ids)

    # The adapter moves the logits far more than 16-bit rounding of the merged weights does.
    assert (peft_logits - base_logits).abs().max() > 0.05
    assert torch.allclose(merged_logits, peft_logits, atol=0.03, rtol=0.02), (merged_logits - peft_logits).abs().max()
    assert not any(n for n, _ in merged.named_parameters() if "lora" in n)


def test_merged_folder_is_complete(tmp_path, tiny_model_dir, adapter_dir):
    from transformers import AutoTokenizer

    out = tmp_path / "merged"
    merge_adapter(tiny_model_dir, adapter_dir, out)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"} <= names
    assert any(n.endswith(".safetensors") for n in names) and not any(n.endswith(".bin") for n in names)
    assert json.loads((out / "config.json").read_text())["dtype"] == "float16"
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|im_end|>"
    assert "<|im_start|>" in tokenizer.chat_template
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_missing_adapter_folder(tmp_path, tiny_model_dir):
    with pytest.raises(RuleboundError, match="does not exist"):
        merge_adapter(tiny_model_dir, tmp_path / "nope", tmp_path / "merged")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuleboundError, match="adapter_config.json"):
        merge_adapter(tiny_model_dir, tmp_path / "empty", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_mismatched_base(tmp_path, tiny_model_dir, adapter_dir):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    other = tmp_path / "other-base"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(other)
    tokenizer.save_pretrained(other)
    with pytest.raises(RuleboundError, match="does not fit the base model"):
        merge_adapter(other, adapter_dir, tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_refuses_quantized_base_and_bad_dtype(tmp_path, tiny_model_dir, adapter_dir):
    quantized = tmp_path / "bnb-base"
    shutil.copytree(tiny_model_dir, quantized)
    config = json.loads((quantized / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quantized / "config.json").write_text(json.dumps(config))
    with pytest.raises(RuleboundError, match="pre-quantized"):
        merge_adapter(quantized, adapter_dir, tmp_path / "merged")
    with pytest.raises(ConfigError, match="float16, bfloat16"):
        merge_adapter(tiny_model_dir, adapter_dir, tmp_path / "merged", dtype="int4")
