"""GRPO of a LoRA adapter (TRL's GRPOTrainer, generation by transformers) with rulebound's reward functions.

The lipogram seed's last rungs: sample ``num_generations`` answers per prompt, score each with the
configured rewards, and push the policy toward the answers that beat their group. Rewards may read the
training progress (0 at the first step, approaching 1 at the last), which the curriculum reward ramps on.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable

import pandas as pd

from rulebound.errors import ConfigError
from rulebound.io import read_table
from rulebound.train.checkpoints import RunSetup
from rulebound.train.distributed import per_device_batch
from rulebound.train.sft import as_messages, common_args, load_model, model_dtype, scratch_dir, train_and_save

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], float], list[float]]


def load_prompts(path: str | os.PathLike):
    """Read GRPO prompts (user text or JSON messages) as TRL's conversational prompt dataset."""
    from datasets import Dataset

    df = read_table(path, ("prompt",), "GRPO training")
    return Dataset.from_list([{"prompt": as_messages(p, "user", f"{path} row {i} prompt")}
                              for i, p in enumerate(df["prompt"])])


def batch_shape(cfg: dict, n_prompts: int | None = None) -> tuple[int, int]:
    """(completions per device step, generations per prompt) from ``batch_size`` prompts per step.

    TRL counts completions in ``per_device_train_batch_size`` and needs whole prompt groups in every
    generation batch; ``batch_size`` x ``num_generations`` is such a batch by construction. On N processes each
    takes ``batch_size / N`` prompts' completions (the global batch stays the config's).
    """
    prompts, generations = int(cfg["batch_size"]), int(cfg.get("num_generations", 4))  # prompts per global step
    accumulation = int(cfg.get("gradient_accumulation_steps", 1))
    if generations < 2:
        raise ConfigError(f"num_generations is {generations}, but GRPO compares answers within a prompt's group: "
                          "set num_generations to 2 or more.")
    if prompts < 1 or accumulation < 1:
        raise ConfigError(f"batch_size ({prompts} prompts per step) and gradient_accumulation_steps "
                          f"({accumulation}) must be at least 1.")
    if n_prompts is not None and prompts * accumulation > n_prompts:
        raise ConfigError(f"One GRPO step takes batch_size x gradient_accumulation_steps = {prompts * accumulation} "
                          f"prompts, but the prompts file has only {n_prompts}: lower batch_size (it counts "
                          "prompts; each gets num_generations answers) or add prompts (data.train_prompts).")
    return per_device_batch(cfg) * generations, generations  # the step's prompts split over the processes


def kl_beta(cfg: dict) -> float:
    """GRPO's KL coefficient: ``kl_beta`` (the schema's name; ``beta`` also read), 0 as in TRL."""
    return float(cfg.get("kl_beta", cfg.get("beta", 0.0)))


def grpo_args(cfg: dict, output_dir: str, dtype, n_prompts: int | None = None, **overrides):
    from trl import GRPOConfig

    per_device, generations = batch_shape(cfg, n_prompts)
    return GRPOConfig(
        **{**common_args(cfg, output_dir, dtype), **overrides},
        per_device_train_batch_size=per_device,
        num_generations=generations,
        max_completion_length=int(cfg.get("max_completion_length", 32)),
        temperature=float(cfg.get("temperature", 1.0)),
        beta=kl_beta(cfg),
        use_vllm=bool(cfg.get("use_vllm", False)),
        log_completions=False,
    )


def completion_text(completion) -> str:
    """The text of one TRL completion: a string, or conversational [{role: assistant, content}]."""
    if isinstance(completion, str):
        return completion
    content = completion[-1]["content"] if completion else ""
    if isinstance(content, list):  # content blocks
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


def prompt_text(prompt) -> str:
    """The user's last turn of one TRL prompt: a string, or conversational [{role, content}, ...]."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"] or list(prompt)
    return completion_text(users[-1:]) if users else ""


def training_progress(trainer_state) -> float:
    """Optimizer steps done over steps planned (TRL's TrainerState), in [0, 1]; 0 before training starts."""
    planned = getattr(trainer_state, "max_steps", 0) or 0
    if planned <= 0:
        return 0.0
    return min(1.0, max(0.0, trainer_state.global_step / planned))


def trl_reward(name: str, reward: RewardFn):
    """Adapt ``reward(texts, progress)`` to TRL's reward signature; TRL logs it as ``rewards/<name>/mean``.

    A reward that takes ``prompts=`` (rulebound.rewards binds one for every reward) also gets the user's
    last turn of each prompt.
    """
    import inspect

    wants_prompts = "prompts" in inspect.signature(reward).parameters

    def reward_func(prompts, completions, trainer_state=None, log_metric=None, **kwargs):
        progress = training_progress(trainer_state)
        if log_metric is not None:
            log_metric("progress", progress)
        texts = [completion_text(c) for c in completions]
        if wants_prompts:
            scores = reward(texts, progress, prompts=[prompt_text(p) for p in prompts])
        else:
            scores = reward(texts, progress)
        if len(scores) != len(completions):
            raise ValueError(f"Reward {name!r} returned {len(scores)} scores for {len(completions)} completions.")
        return [float(s) for s in scores]

    reward_func.__name__ = name
    reward_func.__qualname__ = name
    return reward_func


def reward_functions(specs: list) -> list:
    """Resolve reward specs (rulebound.rewards) into TRL reward functions with distinct names."""
    from rulebound.rewards import resolve_rewards

    if not specs:
        raise ConfigError("GRPO needs at least one reward: set rewards, e.g. [no_e].")
    funcs, seen = [], {}
    for name, reward in resolve_rewards(list(specs)):
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name}_{seen[name]}"  # two curricula with other params
        funcs.append(trl_reward(unique, reward))
    return funcs


def planned_grpo_steps(n_prompts: int, args) -> int:
    """max_steps, or epochs over whole generation batches (TRL drops a last partial one)."""
    if args.max_steps > 0:
        return int(args.max_steps)
    prompts_per_step = args.generation_batch_size // args.num_generations
    return int(n_prompts // prompts_per_step * args.num_train_epochs)


def train_grpo(
    *,
    model_dir: str,
    base_model: str,
    prompts_parquet: str,
    adapter_dir: str,
    metrics_csv: str,
    cfg: dict,
    experiment: str,
    threads: int = 1,
    init_adapter: str | None = None,
    checkpoint_root: str | None = None,
    tracker_dir: str | None = None,
) -> pd.DataFrame:
    """Train a LoRA adapter with GRPO on the configured rewards; write the adapter and per-step metrics.

    Rewards, batch shape and prompts are checked before the model loads, so a bad config fails in seconds.
    """
    import torch
    from transformers import set_seed

    torch.set_num_threads(max(1, threads))
    set_seed(int(cfg.get("seed", 3407)))
    rewards = reward_functions(cfg.get("rewards", ["no_e"]))
    dataset = load_prompts(prompts_parquet)
    batch_shape(cfg, len(dataset))
    from rulebound.train.grpo_fast import uses_fast_grpo

    fast = uses_fast_grpo(cfg)  # trainer: fast (static-cache CUDA-graph sampling) on a GPU; TRL's elsewhere
    model, tokenizer, backend = load_model(model_dir, {**cfg, "backend": "transformers"} if fast else cfg,
                                           init_adapter=init_adapter)
    from trl import GRPOTrainer  # after the backend: Unsloth patches TRL's trainers when imported first
    if fast:
        from rulebound.train.grpo_fast import FastGRPOTrainer as GRPOTrainer
        backend = "transformers (fast GRPO: static-cache CUDA-graph sampling, chunked log-probs)"
    scratch = scratch_dir("grpo", experiment)
    try:
        run = RunSetup(cfg, run_name=experiment, scratch=scratch, checkpoint_root=checkpoint_root,
                       tracker_dir=tracker_dir, key_inputs=dict(data=prompts_parquet, base_model=base_model,
                                                                model_dir=model_dir, init_adapter=init_adapter))
        args = grpo_args(cfg, run.output_dir, model_dtype(model), len(dataset), **run.args)
        trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=run.callbacks(log, "reward"))
        planned = planned_grpo_steps(len(dataset), args)
        log.info("GRPO: %d prompts; per step %d prompts x %d generations; %d planned steps; rewards=%s; init=%s; "
                 "backend=%s", len(dataset), args.per_device_train_batch_size * args.world_size // args.num_generations,
                 args.num_generations, planned,
                 [f.__name__ for f in rewards], init_adapter or "fresh LoRA", backend)
        card = dict(base_model=base_model, experiment=experiment, cfg=cfg, backend=backend, method="grpo")
        return train_and_save(trainer, run, tokenizer, adapter_dir=adapter_dir, metrics_csv=metrics_csv,
                              card=card, planned=planned)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

