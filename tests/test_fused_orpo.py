"""FusedORPOTrainer computes TRL's ORPO loss, metrics and LoRA gradients without the full logits."""

from __future__ import annotations

import random

import pytest
import torch

WORDS = [f"w{i}" for i in range(290)]
METRICS = [
    "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
    "logits/chosen", "logits/rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen",
]


def word_tokenizer():
    """A whitespace word-level tokenizer over a fixed word list (no downloads)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def tiny_llama(tokenizer, seed=0, dtype=torch.float32, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        **overrides,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype)


def lora(model, seed=0):
    """LoRA on all linear layers with B random too (PEFT zero-inits B), so every adapter weight gets a gradient."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, config)


def preference_rows(n=12, seed=0):
    """Prompts and answers of varied lengths, so the batch has padding and prompt/answer boundaries move."""
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    from datasets import Dataset

    return Dataset.from_list([{"prompt": text(3, 12), "chosen": " " + text(2, 15), "rejected": " " + text(2, 15)}
                              for _ in range(n)])


def trainer_for(cls, model, tokenizer, tmp_path, device="cpu", **kwargs):
    from trl.experimental.orpo import ORPOConfig

    extra = {k: kwargs.pop(k) for k in ("padding_free", "chunk_elements", "nll_scope", "prefix_sharing") if k in kwargs}
    args = ORPOConfig(
        output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, max_length=64, beta=0.1,
        learning_rate=kwargs.pop("learning_rate", 1e-3), max_steps=kwargs.pop("max_steps", 1), logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=device == "cpu", seed=0, data_seed=0, disable_tqdm=True,
        dataloader_num_workers=0, bf16=kwargs.pop("bf16", False), **kwargs,
    )
    return cls(model=model, args=args, train_dataset=preference_rows(), processing_class=tokenizer, **extra)


def loss_metrics_grads(trainer, model, batch):
    model.zero_grad(set_to_none=True)
    loss, metrics = trainer.get_batch_loss_metrics(model, batch)
    loss.backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.item(), metrics, grads


def compare(tmp_path, device="cpu", dtype=torch.float32, padding_free=False, chunk_elements=2**26,
            prefix_sharing=False, attn_implementation=None):
    from trl.experimental.orpo import ORPOTrainer

    from rulebound.train.fused_orpo import FusedORPOTrainer

    tokenizer = word_tokenizer()
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = lora(tiny_llama(tokenizer, dtype=dtype, **extra)).to(device)
    reference = trainer_for(ORPOTrainer, model, tokenizer, tmp_path, device=device)
    fused = trainer_for(FusedORPOTrainer, model, tokenizer, tmp_path, device=device, padding_free=padding_free,
                        chunk_elements=chunk_elements, prefix_sharing=prefix_sharing)
    rows = [reference.train_dataset[i] for i in range(4)]
    batch = reference._prepare_inputs(reference.data_collator(rows))
    assert (batch["chosen_attention_mask"] == 0).any(), "the batch should exercise padding"
    return loss_metrics_grads(reference, model, batch), loss_metrics_grads(fused, model, batch)


def assert_grads_close(expected, actual, rtol):
    assert expected.keys() == actual.keys() and len(expected) > 0
    for name, g in expected.items():
        assert g.abs().sum() > 0, name
        rel = (actual[name] - g).norm() / g.norm()
        assert rel < rtol, f"{name}: relative gradient error {rel:.2e}"


# A small chunk forces several chunks through the lm_head (the batch has ~100 counted tokens, vocab 294).
@pytest.mark.parametrize("chunk_elements", [2**26, 7 * 294])
def test_fused_matches_trl_loss_metrics_and_lora_gradients(tmp_path, chunk_elements):
    (loss_ref, m_ref, g_ref), (loss, m, g) = compare(tmp_path, chunk_elements=chunk_elements)
    assert loss == pytest.approx(loss_ref, abs=1e-4)
    assert set(m) == set(m_ref) == set(METRICS)
    for key in METRICS:
        assert m[key] == pytest.approx(m_ref[key], abs=1e-4), key
    assert_grads_close(g_ref, g, rtol=1e-4)


def test_padding_free_matches_trl_except_padded_logit_means(tmp_path):
    (loss_ref, m_ref, g_ref), (loss, m, g) = compare(tmp_path, padding_free=True)
    assert loss == pytest.approx(loss_ref, abs=1e-4)
    for key in METRICS:
        if not key.startswith("logits/"):  # TRL's mean includes padded positions; packing has none
            assert m[key] == pytest.approx(m_ref[key], abs=1e-4), key
    assert_grads_close(g_ref, g, rtol=1e-4)


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_prefix_sharing_matches_trl_except_padded_logit_means(tmp_path, attn_implementation):
    """Each pair's prompt runs once, in one packed row with a pair mask: TRL's loss, metrics and gradients."""
    (loss_ref, m_ref, g_ref), (loss, m, g) = compare(tmp_path, prefix_sharing=True,
                                                     attn_implementation=attn_implementation)
    assert loss == pytest.approx(loss_ref, abs=1e-4)
    for key in METRICS:
        if not key.startswith("logits/"):
            assert m[key] == pytest.approx(m_ref[key], abs=1e-4), key
    assert_grads_close(g_ref, g, rtol=1e-4)


def train_losses(cls, tmp_path, device="cpu", dtype=torch.float32, steps=4, **kwargs):
    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer, dtype=dtype)).to(device)
    trainer = trainer_for(cls, model, tokenizer, tmp_path, device=device, max_steps=steps, **kwargs)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == steps
    return [(entry["loss"], entry["rewards/accuracies"], entry["log_odds_ratio"]) for entry in logs]


def test_training_steps_track_trl(tmp_path):
    from trl.experimental.orpo import ORPOTrainer

    from rulebound.train.fused_orpo import FusedORPOTrainer

    reference = train_losses(ORPOTrainer, tmp_path)
    fused = train_losses(FusedORPOTrainer, tmp_path)
    for ref_step, fused_step in zip(reference, fused):
        assert fused_step == pytest.approx(ref_step, abs=1e-4)
    assert reference[-1][0] < reference[0][0], "a few steps at lr 1e-3 should lower the loss"


def test_fallback_to_trl_without_a_plain_lm_head(tmp_path):
    """A model whose output layer is not a bias-free Linear goes through TRL's own forward, unchanged."""
    from rulebound.train.fused_orpo import FusedORPOTrainer

    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer))
    trainer = trainer_for(FusedORPOTrainer, model, tokenizer, tmp_path)
    assert trainer._decoder_and_head(model) is not None
    model.get_base_model().lm_head = torch.nn.Linear(64, len(tokenizer), bias=True)
    assert trainer._decoder_and_head(model) is None


@pytest.mark.gpu
def test_fused_matches_trl_on_gpu_fp32(tmp_path):
    (loss_ref, m_ref, g_ref), (loss, m, g) = compare(tmp_path, device="cuda")
    assert loss == pytest.approx(loss_ref, abs=1e-4)
    for key in METRICS:
        assert m[key] == pytest.approx(m_ref[key], abs=1e-4), key
    assert_grads_close(g_ref, g, rtol=1e-4)


@pytest.mark.gpu
def test_prefix_sharing_with_flex_attention_matches_trl_on_gpu_fp32(tmp_path):
    """The GPU path: pairs packed with shared prompts, block-sparse flex attention, chunked head."""
    (loss_ref, m_ref, g_ref), (loss, m, g) = compare(tmp_path, device="cuda", prefix_sharing=True,
                                                     attn_implementation="flex_attention")
    assert loss == pytest.approx(loss_ref, abs=1e-4)
    for key in METRICS:
        if not key.startswith("logits/"):
            assert m[key] == pytest.approx(m_ref[key], abs=1e-4), key
    assert_grads_close(g_ref, g, rtol=1e-3)


@pytest.mark.gpu
def test_fused_tracks_trl_on_gpu_bf16(tmp_path):
    """bf16: TRL's log-softmax runs in bf16, ours in fp32, so agreement is to bf16 precision."""
    from trl.experimental.orpo import ORPOTrainer

    from rulebound.train.fused_orpo import FusedORPOTrainer

    reference = train_losses(ORPOTrainer, tmp_path, device="cuda", dtype=torch.bfloat16, bf16=True)
    fused = train_losses(FusedORPOTrainer, tmp_path, device="cuda", dtype=torch.bfloat16, bf16=True)
    for (a, _, _), (b, _, _) in zip(reference, fused):
        assert b == pytest.approx(a, rel=2e-2)


def test_completion_nll_is_cross_entropy_over_chosen_answers_only(tmp_path):
    """nll_scope='completion' (the ORPO paper's SFT term) leaves the prompt out of the NLL, nothing else."""
    import torch.nn.functional as F
    from trl.experimental.orpo import ORPOTrainer

    from rulebound.train.fused_orpo import FusedORPOTrainer

    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer))
    reference = trainer_for(ORPOTrainer, model, tokenizer, tmp_path)
    fused = trainer_for(FusedORPOTrainer, model, tokenizer, tmp_path, nll_scope="completion")
    batch = reference._prepare_inputs(reference.data_collator([reference.train_dataset[i] for i in range(4)]))
    _, ref_metrics = reference.get_batch_loss_metrics(model, batch)
    _, metrics = fused.get_batch_loss_metrics(model, batch)
    with torch.no_grad():
        logits = model(batch["chosen_input_ids"], attention_mask=batch["chosen_attention_mask"]).logits
        expected = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["chosen_labels"][:, 1:].flatten(),
                                   ignore_index=-100)
    assert abs(metrics["nll_loss"] - expected.item()) < 1e-4
    assert abs(metrics["nll_loss"] - ref_metrics["nll_loss"]) > 1e-3  # the prompt is really left out
    for key in ("log_odds_ratio", "rewards/chosen", "rewards/rejected", "logps/chosen"):
        assert abs(metrics[key] - ref_metrics[key]) < 1e-4, key
    with pytest.raises(ValueError, match="nll_scope"):
        trainer_for(FusedORPOTrainer, model, tokenizer, tmp_path, nll_scope="prompt")
