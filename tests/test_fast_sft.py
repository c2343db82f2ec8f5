"""FastSFTTrainer (each batch packed into one row) computes TRL's SFT loss, gradients and training steps."""

from __future__ import annotations

import random

import pytest
import torch
from test_fused_orpo import WORDS, lora, tiny_llama, word_tokenizer

from rulebound.errors import ConfigError
from rulebound.train.sft_fast import pack_rows, uses_fast_sft


def test_fast_sft_is_the_default_on_cuda_only():
    assert uses_fast_sft({}, cuda=True) and not uses_fast_sft({}, cuda=False)
    for off in ({"trainer": "trl"}, {"backend": "unsloth"}, {"load_in_4bit": True}):
        assert not uses_fast_sft(off, cuda=True), off
    with pytest.raises(ConfigError, match="fast, trl"):
        uses_fast_sft({"trainer": "packed"}, cuda=True)


def test_pack_rows_drops_padding_and_restarts_positions():
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), "attention_mask": torch.tensor(
        [[1, 1, 1, 0], [1, 1, 0, 0]]), "labels": torch.tensor([[-100, 6, 7, -100], [8, 9, -100, -100]])}
    packed = pack_rows(inputs, pad_id=0, multiple=4)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert packed["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, -100]]  # no loss across rows
    assert "attention_mask" not in packed


def _sft(cls, tmp_path, max_steps, **extra):
    from datasets import Dataset
    from trl import SFTConfig

    rng = random.Random(0)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    data = Dataset.from_list([{"prompt": text(2, 10), "completion": " " + text(1, 12)} for _ in range(16)])
    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer, attn_implementation="sdpa"))
    args = SFTConfig(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, max_length=64,
                     learning_rate=5e-3, max_steps=max_steps, logging_steps=1, report_to="none", save_strategy="no",
                     use_cpu=True, seed=0, data_seed=0, disable_tqdm=True, dataloader_num_workers=0,
                     completion_only_loss=True, gradient_accumulation_steps=2)
    return cls(model=model, args=args, train_dataset=data, processing_class=tokenizer, **extra), model


def test_packed_batches_give_trls_loss_and_gradients(tmp_path):
    from trl import SFTTrainer

    from rulebound.train.sft_fast import FastSFTTrainer

    out = []
    for cls, extra in ((SFTTrainer, {}), (FastSFTTrainer, {"pack_multiple": 16})):
        trainer, model = _sft(cls, tmp_path, 1, **extra)
        batch = next(iter(trainer.get_train_dataloader()))
        assert batch["attention_mask"].float().mean() < 0.9  # the padded batch has padding to skip
        n_items = (batch["labels"][:, 1:] != -100).sum()
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        out.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                    trainer._metrics["train"]["num_tokens"][-1]))
    (loss_a, grads_a, tokens_a), (loss_b, grads_b, tokens_b) = out
    assert loss_b == pytest.approx(loss_a, rel=1e-5) and tokens_a == tokens_b
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 28
    for name, g in grads_a.items():
        assert torch.allclose(grads_b[name], g, rtol=1e-4, atol=1e-7), name


def test_training_steps_track_trl(tmp_path):
    from trl import SFTTrainer

    from rulebound.train.sft_fast import FastSFTTrainer

    losses = []
    for cls, extra in ((SFTTrainer, {}), (FastSFTTrainer, {"pack_multiple": 8})):
        trainer, _ = _sft(cls, tmp_path, 3, **extra)
        trainer.train()
        losses.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
    assert len(losses[0]) == 3 and losses[1] == pytest.approx(losses[0], rel=1e-4)
