"""Generation mechanics: batching does not change greedy replies, order is kept, adapters are applied."""

from __future__ import annotations

import pytest

from rulebound.generate import gguf_generate, hf_generate


def chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# Distinct lengths, so the length sort puts them in one fixed order whatever the input order.
PROMPTS = ["Hi.", "What is the capital of Japan?", "Please write a haiku about autumn leaves and rain.",
           "Explain gravity in simple terms, please, for a child of eight who likes football and cats."]


def test_batched_equals_one_at_a_time_on_embedded_model(embedded_model_dir):
    conversations = [chat(p) for p in PROMPTS[1:]]
    batched = hf_generate(embedded_model_dir, conversations, max_new_tokens=12, batch_size=3, threads=1)
    single = hf_generate(embedded_model_dir, conversations, max_new_tokens=12, batch_size=1, threads=1)
    assert batched == single
    assert all(isinstance(r, str) and r for r in batched)
    assert not any("<|im_end|>" in r or "<|im_start|>" in r for r in batched)  # special tokens skipped
    assert len(set(batched)) == len(batched)  # different questions, different answers


def test_order_is_preserved(tiny_model_dir):
    conversations = [chat(p) for p in PROMPTS]
    forward = hf_generate(tiny_model_dir, conversations, max_new_tokens=6, batch_size=2, threads=1)
    backward = hf_generate(tiny_model_dir, conversations[::-1], max_new_tokens=6, batch_size=2, threads=1)
    assert len(forward) == len(PROMPTS)
    assert backward == forward[::-1]
    assert hf_generate(tiny_model_dir, [], max_new_tokens=6) == []


def test_system_prompt_is_prepended(tiny_model_dir):
    conversation = chat(PROMPTS[1])
    explicit = hf_generate(tiny_model_dir, [[{"role": "system", "content": "Be terse."}, *conversation]],
                           max_new_tokens=6, threads=1)
    with_system = hf_generate(tiny_model_dir, [conversation], max_new_tokens=6, threads=1, system_prompt="Be terse.")
    assert with_system == explicit


@pytest.fixture(scope="module")
def random_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with non-zero B, so it really moves the tiny model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    out = tmp_path_factory.mktemp("adapters") / "random"
    get_peft_model(model, config).save_pretrained(out)
    return out


def test_adapter_is_applied(tiny_model_dir, random_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    conversations = [chat(p) for p in PROMPTS[:3]]
    with_adapter = hf_generate(tiny_model_dir, conversations, adapter_dir=random_adapter, max_new_tokens=8,
                               batch_size=1, threads=1)
    base = hf_generate(tiny_model_dir, conversations, max_new_tokens=8, batch_size=1, threads=1)
    assert with_adapter != base

    # reference: the unmerged PeftModel, greedy, one prompt
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                                      random_adapter).eval()
    text = tokenizer.apply_chat_template(conversations[0], tokenize=False, add_generation_prompt=True)
    enc = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**enc, do_sample=False, max_new_tokens=8, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert with_adapter[0] == expected


def test_gguf_generate_is_greedy_and_ordered():
    from rulebound.models import embedded_gguf_path

    gguf = embedded_gguf_path("smollm2-135m-instruct")
    conversations = [chat("What is the capital of Japan?"), chat("Name three planets in our solar system.")]
    both = gguf_generate(gguf, conversations, max_new_tokens=8, n_ctx=512, threads=1)
    second = gguf_generate(gguf, conversations[1:], max_new_tokens=8, n_ctx=512, threads=1)
    assert len(both) == 2 and all(isinstance(r, str) and r for r in both)
    assert both[1] == second[0]
    assert "Tokyo" in both[0]
