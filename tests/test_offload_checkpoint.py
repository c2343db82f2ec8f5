"""Offloaded gradient checkpointing gives the gradients of plain checkpointing (and of none)."""

from __future__ import annotations

import pytest
import torch
from test_fused_orpo import lora, tiny_llama, word_tokenizer

from rulebound.train.offload_checkpoint import enable_offloaded_checkpointing


def _grads(offload: bool, checkpointing: bool = True, device="cpu"):
    tokenizer = word_tokenizer()
    model = tiny_llama(tokenizer, attn_implementation="sdpa")
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = lora(model).to(device).train()
    if offload:
        assert enable_offloaded_checkpointing(model) == 2
    ids = torch.randint(4, len(tokenizer), (3, 17), generator=torch.Generator().manual_seed(0)).to(device)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone().cpu() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_offloaded_checkpointing_keeps_loss_and_gradients(device):
    loss_plain, grads_plain = _grads(offload=False, checkpointing=False, device=device)
    loss_ckpt, grads_ckpt = _grads(offload=False, device=device)
    loss_off, grads_off = _grads(offload=True, device=device)
    assert loss_off == pytest.approx(loss_plain, rel=1e-6) and loss_ckpt == pytest.approx(loss_plain, rel=1e-6)
    assert grads_off.keys() == grads_plain.keys() and len(grads_off) == 28
    for name, g in grads_plain.items():
        assert torch.allclose(grads_off[name], g, rtol=1e-4, atol=1e-6), name
