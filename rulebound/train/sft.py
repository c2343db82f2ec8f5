"""SFT of a LoRA adapter (TRL's SFTTrainer) on prompt-completion chats, loss on the assistant's answer only.

The lipogram seed's first rung: train on answers that already keep the rule. The helpers shared with
GRPO (chat cells, the common TrainingArguments, writing the adapter) live here too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from rulebound.errors import DataError
from rulebound.io import atomic_path, read_table, write_csv
from rulebound.train.backend import LoraSettings, cuda_available, load_for_training
from rulebound.train.card import write_model_card
from rulebound.train.checkpoints import RunSetup, step_metrics
from rulebound.train.distributed import per_device_batch, save_on_main, unwrapped
from rulebound.train.orpo import planned_steps

log = logging.getLogger(__name__)

SFT_COLUMNS = ("prompt", "completion")


def _is_messages(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in value)


def as_messages(cell, role: str, where: str = "a chat cell") -> list[dict]:
    """A table cell as chat messages: a list of {role, content}, its JSON text, or plain text (one ``role`` turn)."""
    if isinstance(cell, str):
        try:
            parsed = json.loads(cell) if cell.lstrip().startswith("[") else None
        except json.JSONDecodeError:
            parsed = None  # plain text that happens to start with a bracket
        return _clean(parsed) if _is_messages(parsed) else [{"role": role, "content": cell}]
    try:
        messages = list(cell)  # a list column read back from parquet is a numpy array of dicts
    except TypeError:
        messages = None
    if not _is_messages(messages):
        raise DataError(f"{where} should be text or a list of {{role, content}} messages, not {str(cell)[:80]!r}; "
                        "fix or drop that row.")
    return _clean(messages)


def _clean(messages: list[dict]) -> list[dict]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def load_sft_data(path: str | os.PathLike):
    """Read prompt-completion rows as TRL's conversational prompt-completion dataset."""
    from datasets import Dataset

    df = read_table(path, SFT_COLUMNS, "SFT training")
    rows = []
    for i, (prompt, completion) in enumerate(zip(df["prompt"], df["completion"])):
        prompt_msgs = as_messages(prompt, "user", f"{path} row {i} prompt")
        answer = as_messages(completion, "assistant", f"{path} row {i} completion")
        if prompt_msgs[-1]["role"] == "assistant" or [m["role"] for m in answer] != ["assistant"]:
            raise DataError(f"{path} row {i}: the prompt must end on a user turn and the completion be one "
                            "assistant message; rebuild the SFT data (rule build_sft_data).")
        rows.append({"prompt": prompt_msgs, "completion": answer})
    return Dataset.from_list(rows)


def common_args(cfg: dict, output_dir: str, dtype) -> dict:
    """TrainingArguments every rulebound trainer shares, from a method's settings (as ORPO's)."""
    import torch

    on_gpu = cuda_available()
    seed = int(cfg.get("seed", 3407))
    return dict(
        output_dir=output_dir,
        max_steps=int(cfg.get("max_steps", -1)),
        num_train_epochs=float(cfg.get("epochs", 1)),
        learning_rate=float(cfg["learning_rate"]),
        gradient_accumulation_steps=int(cfg.get("gradient_accumulation_steps", 1)),
        lr_scheduler_type=cfg.get("lr_scheduler_type", "linear"),
        warmup_steps=float(cfg.get("warmup_ratio", 0.0)),  # transformers 5: a float < 1 is a ratio
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        optim=cfg.get("optim", "adamw_torch") if on_gpu else "adamw_torch",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not on_gpu,
        gradient_checkpointing=False,  # the backend enables it on the model where asked
        dataloader_num_workers=0,
        disable_tqdm=True,
    )


def sft_args(cfg: dict, output_dir: str, dtype, **overrides):
    """TRL's SFTConfig: conversational prompt-completion rows, loss on the completion only; ``overrides``
    (checkpoints, tracker) win over common_args."""
    from trl import SFTConfig

    return SFTConfig(
        **{**common_args(cfg, output_dir, dtype), **overrides},
        per_device_train_batch_size=per_device_batch(cfg),  # the config's batch over the processes
        max_length=int(cfg.get("max_length", 256)),
        completion_only_loss=True,
        assistant_only_loss=False,  # the completion is the assistant's turn; no {% generation %} template needed
        packing=False,
        dataset_num_proc=None,
    )


def build_sft_trainer(model, tokenizer, dataset, cfg: dict, output_dir: str, callbacks=(), fast: bool = False,
                      args_overrides: dict | None = None):
    """An SFTTrainer over ``dataset``; its train_dataset holds the tokenized rows with prompt labels at -100.

    ``fast``: rulebound.train.sft_fast.FastSFTTrainer (each batch packed into one row, same loss)."""
    from trl import SFTTrainer

    args = sft_args(cfg, output_dir, model_dtype(model), **(args_overrides or {}))
    if fast:
        from rulebound.train.sft_fast import FastSFTTrainer

        return FastSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              callbacks=list(callbacks), pack_multiple=256)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=list(callbacks))


def model_dtype(model):
    import torch

    return next(p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.uint8)


def load_model(model_dir: str, cfg: dict, init_adapter: str | None = None, **options):
    """The backend's LoRA model for a method's settings: (model, tokenizer, backend); ``options`` go to
    load_for_training (attn_implementation, compile_layers)."""
    return load_for_training(
        model_dir,
        LoraSettings.from_config(cfg.get("lora", {})),
        cfg.get("backend", "auto"),
        max_seq_length=int(cfg.get("max_length", 256)),
        load_in_4bit=bool(cfg.get("load_in_4bit", False)),
        precision=cfg.get("precision", "auto"),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        init_adapter=init_adapter,
        **options,
    )


def train_and_save(trainer, run: RunSetup, tokenizer, *, adapter_dir: str, metrics_csv: str, card: dict,
                   planned: int) -> pd.DataFrame:
    """Train (from the newest checkpoint, where there is one), then write the adapter folder (weights, tokenizer,
    card) and the per-step metrics atomically; the run's checkpoints go once the adapter is written."""
    result = run.train(trainer, planned)
    log.info("%s summary: %s", type(trainer).__name__, result.metrics)
    metrics = step_metrics(trainer.state.log_history)
    model = unwrapped(trainer)
    card = {**card, "cfg": {**card["cfg"], "lora": lora_shape(model)}}  # an init adapter's, where one was
    with save_on_main(trainer) as (main, state):  # rank 0 writes; one process: always
        if main:
            with atomic_path(adapter_dir, is_dir=True) as tmp:
                # only the trained adapter: GRPO with a KL term adds a frozen "ref" copy next to it
                model.save_pretrained(tmp, safe_serialization=True, selected_adapters=["default"], state_dict=state)
                tokenizer.save_pretrained(tmp)
                write_model_card(Path(tmp), trainer=type(trainer).__name__, metrics=metrics, summary=result.metrics,
                                 **card)
            write_csv(metrics, metrics_csv)
    run.finish()
    return metrics


def lora_shape(model) -> dict:
    """The LoRA settings the model really trains (the card's), in the config's names."""
    config = model.peft_config["default"]
    targets = config.target_modules
    return {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
            "target_modules": [targets] if isinstance(targets, str) else sorted(targets)}


def scratch_dir(method: str, experiment: str) -> str:
    return tempfile.mkdtemp(prefix=f"rulebound-{method}-{experiment.replace('/', '-')}-")


def train_sft(
    *,
    model_dir: str,
    base_model: str,
    train_parquet: str,
    adapter_dir: str,
    metrics_csv: str,
    cfg: dict,
    experiment: str,
    threads: int = 1,
    checkpoint_root: str | None = None,
    tracker_dir: str | None = None,
) -> pd.DataFrame:
    """Train a LoRA adapter with SFT on prompt-completion chats; write the adapter and per-step metrics.

    ``checkpoint_root`` and ``tracker_dir`` as in rulebound.train.orpo.train_orpo."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(max(1, threads))
    set_seed(int(cfg.get("seed", 3407)))
    dataset = load_sft_data(train_parquet)
    from rulebound.train.sft_fast import uses_fast_sft

    fast = uses_fast_sft(cfg)  # trainer: fast on a GPU: packed rows, flex attention, compiled layers
    model, tokenizer, backend = load_model(model_dir, {**cfg, "backend": "transformers"} if fast else cfg,
                                           **({"attn_implementation": "flex_attention", "compile_layers": True}
                                              if fast else {}))
    if fast:
        backend = "transformers (fast SFT: packed rows, flex attention, compiled layers)"
    scratch = scratch_dir("sft", experiment)
    try:
        run = RunSetup(cfg, run_name=experiment, scratch=scratch, checkpoint_root=checkpoint_root,
                       tracker_dir=tracker_dir, key_inputs=dict(data=train_parquet, base_model=base_model,
                                                                model_dir=model_dir))
        trainer = build_sft_trainer(model, tokenizer, dataset, cfg, run.output_dir,
                                    callbacks=run.callbacks(log, "mean_token_accuracy"), fast=fast,
                                    args_overrides=run.args)
        planned = planned_steps(len(trainer.train_dataset), trainer.args)
        log.info("SFT: %d rows (%d after tokenizing and length checks), %d planned steps, backend=%s",
                 len(dataset), len(trainer.train_dataset), planned, backend)
        card = dict(base_model=base_model, experiment=experiment, cfg=cfg, backend=backend, method="sft")
        return train_and_save(trainer, run, tokenizer, adapter_dir=adapter_dir, metrics_csv=metrics_csv,
                              card=card, planned=planned)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
