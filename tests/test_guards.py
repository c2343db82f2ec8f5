"""NonFiniteGuard: a NaN/inf gradient step is skipped (weights and optimizer state untouched), counted in the
logs, survives a resume, and a run that keeps producing them stops with an error naming the fix."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from rulebound.errors import RuleboundError
from rulebound.train.guards import LOG_KEY, NonFiniteGuard, any_process, avoid_cudnn_attention, nonfinite_grads

VOCAB = 64


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int = 64, length: int = 12) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, VOCAB, (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class Poison(TrainerCallback):
    """Writes NaN (or inf) into one gradient before the guard sees it, on the given 1-based steps; snapshots
    the weights and AdamW's step counts after every step."""

    def __init__(self, steps, value=math.nan) -> None:
        self.steps, self.value = set(steps), value
        self.weights, self.adam_steps = {}, {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 in self.steps:
            next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = self.value

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.weights[state.global_step] = [p.detach().clone() for p in model.parameters()]
        self.adam_steps[state.global_step] = max(
            (float(s["step"]) for s in optimizer.state.values() if "step" in s), default=0.0)


def trainer(tmp_path, poison: Poison, steps: int = 6, guard=None, **overrides) -> Trainer:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
                             learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to="none",
                             use_cpu=True, disable_tqdm=True, **overrides)
    return Trainer(model=LlamaForCausalLM(config), args=args, train_dataset=Rows(),
                   callbacks=[poison, guard or NonFiniteGuard()])


def test_nonfinite_grads_sees_nan_and_inf_but_not_large_bf16():
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))
    p.grad = torch.full((4,), 3e38, dtype=torch.bfloat16)  # its square overflows bf16, not fp32's norm
    assert not nonfinite_grads([p])
    for value in (math.nan, math.inf, -math.inf):
        p.grad[1] = value
        assert nonfinite_grads([p])
    q = torch.nn.Parameter(torch.zeros(2))
    assert not nonfinite_grads([q])  # no gradient at all
    assert any_process(True, "cpu") and not any_process(False, "cpu")  # one process: the flag itself


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_bad_step_is_skipped_and_counted(tmp_path, value):
    poison = Poison({3}, value)
    t = trainer(tmp_path, poison)
    t.train()
    # step 3 changed nothing: the weights after it are those after step 2, and AdamW did not count it
    assert all(torch.equal(a, b) for a, b in zip(poison.weights[2], poison.weights[3]))
    assert poison.adam_steps[3] == poison.adam_steps[2] == 2
    assert not all(torch.equal(a, b) for a, b in zip(poison.weights[3], poison.weights[4]))
    assert all(torch.isfinite(p).all() for p in t.model.parameters())
    logged = {e["step"]: e[LOG_KEY] for e in t.state.log_history if LOG_KEY in e}
    assert logged == {1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 1}


def test_without_the_guard_one_nan_ruins_the_weights(tmp_path):
    """The failure the guard exists for, shown on the same run: one NaN step and the weights are NaN."""
    poison = Poison({3})
    t = trainer(tmp_path, poison, guard=TrainerCallback())
    t.train()
    assert not all(torch.isfinite(p).all() for p in t.model.parameters())


def test_a_run_that_keeps_failing_stops_with_a_clear_error(tmp_path):
    t = trainer(tmp_path, Poison(range(3, 20)), steps=12)
    with pytest.raises(RuleboundError, match=r"step 7: 5 optimizer steps had NaN or inf gradients \(5 in a row"):
        t.train()
    t = trainer(tmp_path, Poison({2, 4, 6, 8}), steps=12, guard=NonFiniteGuard(max_consecutive=5, max_total=3))
    with pytest.raises(RuleboundError, match="lower learning_rate"):
        t.train()


def test_fp16_is_left_to_the_grad_scaler(tmp_path):
    guard = NonFiniteGuard()

    class Args:
        fp16 = True

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2))
            self.w.grad = torch.tensor([math.nan, 0.0])

    model = Model()
    guard.on_pre_optimizer_step(Args(), None, None, model=model)
    assert model.w.grad is not None and guard.skipped == 0


def test_the_count_survives_a_resume():
    class State:
        log_history = [{"step": 1, LOG_KEY: 0, "loss": 1.0}, {"step": 2, LOG_KEY: 2, "loss": 0.9}]

    guard = NonFiniteGuard()
    guard.on_train_begin(None, State(), None)
    assert guard.skipped == 2


def test_every_training_run_has_the_guard(tmp_path):
    import logging

    from rulebound.train.checkpoints import RunSetup

    run = RunSetup({"max_steps": 2, "learning_rate": 1e-4}, run_name="x", scratch=str(tmp_path))
    assert any(isinstance(c, NonFiniteGuard) for c in run.callbacks(logging.getLogger("x"), "loss"))
    assert avoid_cudnn_attention() is torch.cuda.is_available()
