"""FastGRPOTrainer samples from the model's own distribution and computes TRL's GRPO loss and gradients.

Together these give the same reward and loss in expectation as TRL's GRPOTrainer: the completions are drawn
from the same distribution (HF's logits processing, exact per-step conditionals through the static cache,
prefix sharing and left padding), and for the same completions the loss, metrics and LoRA gradients are
TRL's. All on a tiny random Llama on the CPU; the CUDA-graph path is checked on a GPU.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from test_fused_orpo import WORDS, lora, tiny_llama, word_tokenizer

from rulebound.errors import ConfigError
from rulebound.train.fast_generate import SamplingSettings, StaticSampler, gumbel_sample, process_scores
from rulebound.train.grpo_fast import uses_fast_grpo


def test_fast_grpo_is_the_default_on_cuda_only():
    assert uses_fast_grpo({}, cuda=True) and not uses_fast_grpo({}, cuda=False)
    for off in ({"trainer": "trl"}, {"backend": "unsloth"}, {"load_in_4bit": True}, {"use_vllm": True}):
        assert not uses_fast_grpo(off, cuda=True), off
    with pytest.raises(ConfigError, match="fast, trl"):
        uses_fast_grpo({"trainer": "vllm"}, cuda=True)


@pytest.mark.parametrize("settings", [
    dict(temperature=0.7), dict(top_k=5), dict(top_p=0.8, temperature=1.3), dict(min_p=0.05),
    dict(top_k=20, top_p=0.9, min_p=0.02, temperature=0.9, suppress_ids=(3, 7)),
])
def test_logits_processing_is_hfs(settings):
    from transformers.generation.logits_process import (MinPLogitsWarper, SuppressTokensLogitsProcessor,
                                                        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    s = SamplingSettings(max_new_tokens=1, eos_ids=(2,), pad_id=0, **settings)
    scores = torch.randn(6, 50, generator=torch.Generator().manual_seed(1)) * 3
    ids = torch.zeros(6, 1, dtype=torch.long)
    processors = [SuppressTokensLogitsProcessor(list(s.suppress_ids))] if s.suppress_ids else []
    processors += [TemperatureLogitsWarper(s.temperature)] if s.temperature != 1 else []
    processors += [TopKLogitsWarper(s.top_k)] if s.top_k else []
    processors += [TopPLogitsWarper(s.top_p)] if s.top_p < 1 else []
    processors += [MinPLogitsWarper(s.min_p)] if s.min_p else []
    expected = scores.clone()
    for processor in processors:
        expected = processor(ids, expected)
    assert torch.equal(process_scores(scores, s), expected)


def test_gumbel_draws_follow_the_softmax():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf"), 0.5]])
    n = 200_000
    draws = gumbel_sample(scores.expand(n, -1).contiguous(), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=6).double() / n
    probs = scores[0].double().softmax(-1)
    assert freq[4] == 0
    assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / n)  # four standard errors at worst


def _prompts(n_groups=3, generations=2, seed=0):
    rng = random.Random(seed)
    groups = [[4 + rng.randrange(len(WORDS)) for _ in range(rng.randint(2, 9))] for _ in range(n_groups)]
    return [p for p in groups for _ in range(generations)]


def test_greedy_static_decoding_equals_generate():
    """top_k=1 makes sampling greedy: every token through the static cache equals generate()'s."""
    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer, attn_implementation="sdpa")).eval()
    prompts = _prompts()
    s = SamplingSettings(max_new_tokens=10, eos_ids=(tokenizer.eos_token_id,), pad_id=tokenizer.pad_token_id, top_k=1)
    ours = StaticSampler(s, prompt_multiple=4).generate(model, prompts)
    width = max(map(len, prompts))
    ids = torch.tensor([[s.pad_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=10,
                         pad_token_id=s.pad_id, eos_token_id=s.eos_ids[0])[:, width:].tolist()
    for row, theirs in zip(ours, out):
        assert row == theirs[: len(row)] and len(row) >= 1


def test_sampled_sequences_follow_the_models_distribution():
    """On a 6-token vocabulary, 3 new tokens: sequence frequencies over 2 x 6,000 draws match the exact
    probabilities of the model (teacher-forced), for two prompts of different lengths."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=6, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1, attn_implementation="sdpa")
    torch.manual_seed(3)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper than the random init, so sequence probabilities differ
        model.lm_head.weight.mul_(30)
    s = SamplingSettings(max_new_tokens=3, eos_ids=(1,), pad_id=0, temperature=0.8)
    prompts = [[2, 3, 4, 5, 2], [5, 4]]
    n = 6_000
    torch.manual_seed(11)
    draws = StaticSampler(s, prompt_multiple=8).generate(model, [p for p in prompts for _ in range(n)])
    for k, prompt in enumerate(prompts):
        counts = {}
        for seq in draws[k * n:(k + 1) * n]:
            counts[tuple(seq)] = counts.get(tuple(seq), 0) + 1
        exact = {}
        for tail in itertools.product(range(6), repeat=3):
            seq = list(tail[: tail.index(1) + 1]) if 1 in tail else list(tail)
            if tuple(seq) in exact:
                continue
            with torch.no_grad():
                logits = model(torch.tensor([prompt + seq])).logits[0, len(prompt) - 1:-1].double() / 0.8
            exact[tuple(seq)] = float(logits.log_softmax(-1).gather(1, torch.tensor(seq)[:, None]).sum().exp())
        assert abs(sum(exact.values()) - 1) < 1e-6
        tv = 0.5 * sum(abs(counts.get(q, 0) / n - p) for q, p in exact.items())
        assert tv < 0.05, (prompt, tv)  # about 0.02 expected from sampling noise alone
        assert set(counts) <= set(exact)


def _grpo(cls, tokenizer, tmp_path, beta=0.0, max_steps=1):
    from datasets import Dataset
    from trl import GRPOConfig

    def no_w1(completions, **kwargs):  # a lipogram-like reward on words: fewer "w1" words is better
        return [-float(c.split().count("w1")) + 0.1 * len(c.split()) for c in completions]

    args = GRPOConfig(output_dir=str(tmp_path / cls.__name__), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=6, beta=beta, learning_rate=1e-2, max_steps=max_steps, logging_steps=1,
                      report_to="none", save_strategy="no", use_cpu=True, seed=0, data_seed=0, disable_tqdm=True,
                      dataloader_num_workers=0, bf16=False)
    rng = random.Random(0)
    data = Dataset.from_list([{"prompt": " ".join(rng.choice(WORDS[:20]) for _ in range(rng.randint(2, 6)))}
                              for _ in range(8)])
    model = lora(tiny_llama(tokenizer, attn_implementation="sdpa"))
    return cls(model=model, reward_funcs=no_w1, args=args, train_dataset=data, processing_class=tokenizer), model


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_same_completions_give_trls_loss_metrics_and_gradients(tmp_path, beta):
    from trl import GRPOTrainer

    from rulebound.train.grpo_fast import FastGRPOTrainer

    tokenizer = word_tokenizer()
    completions = [[5, 6, 7, 2], [8, 9], [10, 11, 12, 13, 14, 15], [4, 4, 2], [7, 2], [9, 9, 9, 9, 9, 9]]
    results = []
    for cls in (GRPOTrainer, FastGRPOTrainer):
        trainer, model = _grpo(cls, tokenizer, tmp_path, beta)
        assert cls is GRPOTrainer or (trainer.sampler is not None and trainer.chunked_logps_off is None)
        trainer._generate_single_turn = lambda prompt_ids, *a, **k: ([completions[i % 6] for i in
                                                                      range(len(prompt_ids))], None)
        trainer.current_gradient_accumulation_steps = 1  # what the training loop sets
        batch = next(iter(trainer.get_train_dataloader()))
        inputs = trainer._generate_and_score_completions(batch)
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items() if v}
        results.append((loss.item(), grads, metrics, inputs["advantages"]))
    (loss_a, grads_a, metrics_a, adv_a), (loss_b, grads_b, metrics_b, adv_b) = results
    assert torch.equal(adv_a, adv_b) and adv_a.abs().sum() > 0
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-7)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) == 28  # LoRA A and B, 7 linear layers x 2
    for name, g in grads_a.items():
        assert torch.allclose(grads_b[name], g, rtol=1e-4, atol=1e-7), name
    for key, value in metrics_a.items():
        assert metrics_b[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_fast_trainer_trains_and_logs_trls_metrics(tmp_path):
    from rulebound.train.grpo_fast import FastGRPOTrainer

    trainer, _ = _grpo(FastGRPOTrainer, word_tokenizer(), tmp_path, beta=0.05, max_steps=2)
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logs) == 2
    for key in ("reward", "reward_std", "completions/mean_length", "kl", "entropy"):
        assert all(math.isfinite(e[key]) for e in logs), key
    assert all(1 <= e["completions/mean_length"] <= 6 for e in logs)


@pytest.mark.gpu
def test_cuda_graph_decoding_equals_generate_on_gpu():
    tokenizer = word_tokenizer()
    model = lora(tiny_llama(tokenizer, attn_implementation="sdpa")).cuda().eval()
    prompts = _prompts(n_groups=4, generations=4)
    s = SamplingSettings(max_new_tokens=12, eos_ids=(tokenizer.eos_token_id,), pad_id=tokenizer.pad_token_id, top_k=1)
    sampler = StaticSampler(s, prompt_multiple=8, sync_every=100)
    eager = StaticSampler(s, prompt_multiple=8, use_graphs=False).generate(model, prompts)
    graphed = sampler.generate(model, prompts)
    again = sampler.generate(model, prompts)  # the captured graph, replayed for a second batch
    assert next(iter(sampler._decoders.values())).graph is not None
    assert graphed == eager == again
