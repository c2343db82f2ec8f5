"""ORPO training of a LoRA adapter (TRL's ``trl.experimental.orpo``), as the politeness and truthy seeds do."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from rulebound.errors import ConfigError
from rulebound.io import atomic_path, read_table, write_csv
from rulebound.train.backend import LoraSettings, cuda_available, load_for_training, uses_fast_path
from rulebound.train.card import write_model_card
from rulebound.train.checkpoints import RunSetup, step_metrics
from rulebound.train.distributed import per_device_batch, save_on_main, unwrapped
from rulebound.train.sampling import with_grouped_batches

log = logging.getLogger(__name__)

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
TRAINERS = ("fused", "trl")


def load_preference_data(path: str | os.PathLike):
    """Read a formatted preference parquet: (datasets.Dataset of prompt/chosen/rejected, its pair groups).

    The groups are the request ids where the data has them (one request's please / no-please rows).
    """
    from datasets import Dataset

    df = read_table(path, PREFERENCE_COLUMNS, "ORPO training")
    groups = df["request_id"].tolist() if "request_id" in df.columns else None
    return Dataset.from_pandas(df[list(PREFERENCE_COLUMNS)].reset_index(drop=True), preserve_index=False), groups


def orpo_args(cfg: dict, output_dir: str, dtype, threads: int, **overrides):
    """Build TRL's ORPOConfig from the experiment's ``train`` section; ``overrides`` (checkpoints, tracker) win."""
    import torch
    from trl.experimental.orpo import ORPOConfig

    on_gpu = cuda_available()
    return ORPOConfig(**{**dict(
        output_dir=output_dir,
        max_steps=int(cfg.get("max_steps", -1)),
        num_train_epochs=float(cfg.get("epochs", 1)),
        learning_rate=float(cfg["learning_rate"]),
        per_device_train_batch_size=per_device_batch(cfg),  # the config's batch over the processes
        gradient_accumulation_steps=int(cfg.get("gradient_accumulation_steps", 1)),
        lr_scheduler_type=cfg.get("lr_scheduler_type", "linear"),
        warmup_steps=float(cfg.get("warmup_ratio", 0.0)),  # transformers 5: a float < 1 is a ratio
        weight_decay=float(cfg.get("weight_decay", 0.0)),
        optim=cfg.get("optim", "adamw_torch") if on_gpu else "adamw_torch",
        beta=float(cfg.get("beta", 0.1)),
        max_length=int(cfg.get("max_length", 1024)),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=int(cfg.get("seed", 3407)),
        data_seed=int(cfg.get("seed", 3407)),
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not on_gpu,
        gradient_checkpointing=False,  # the backend enables it on the model where asked
        dataloader_num_workers=0,
        dataset_num_proc=None,
        disable_tqdm=True,
    ), **overrides})


def planned_steps(rows: int, args) -> int:
    """Optimizer steps the run will take: max_steps, or epochs over the batches (the seeds report this)."""
    if args.max_steps > 0:
        return int(args.max_steps)
    batch = args.per_device_train_batch_size * max(1, args.world_size)
    per_step = batch * args.gradient_accumulation_steps
    return int(math.ceil(math.ceil(rows / batch) / args.gradient_accumulation_steps
                         * args.num_train_epochs)) if per_step else 0


def fused_trainer():
    from rulebound.train.fused_orpo import FusedORPOTrainer

    return FusedORPOTrainer


def trainer_class(name: str):
    if name not in TRAINERS:
        raise ConfigError(f"train.trainer must be one of {', '.join(TRAINERS)}; got {name!r}.")
    if name == "fused":
        from rulebound.train.fused_orpo import FusedORPOTrainer

        return FusedORPOTrainer
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer


def train_orpo(
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
    """Train a LoRA adapter with ORPO; write the adapter folder and per-step metrics atomically.

    ``checkpoint_root``: checkpoints every ``save_steps`` under it, resumed on a rerun (rulebound.train.checkpoints);
    ``tracker_dir``: where ``report_to``'s files go (rulebound.train.trackers)."""
    import torch
    from transformers import set_seed

    torch.set_num_threads(max(1, threads))
    set_seed(int(cfg.get("seed", 3407)))
    lora = LoraSettings.from_config(cfg.get("lora", {}))
    dataset, groups = load_preference_data(train_parquet)
    fast = uses_fast_path(cfg)
    model, tokenizer, backend = load_for_training(
        model_dir,
        lora,
        "transformers" if fast else cfg.get("backend", "auto"),
        max_seq_length=int(cfg.get("max_length", 1024)),
        load_in_4bit=bool(cfg.get("load_in_4bit", False)),
        precision=cfg.get("precision", "auto"),
        gradient_checkpointing=bool(cfg.get("gradient_checkpointing", False)),
        attn_implementation="flex_attention" if fast else None,
        compile_layers=fast,
    )
    if fast:
        backend = "transformers (fast path: shared prompts, flex attention, compiled layers)"
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.uint8)
    scratch = tempfile.mkdtemp(prefix=f"rulebound-train-{experiment.replace('/', '-')}-")
    try:
        run = RunSetup(cfg, run_name=experiment, scratch=scratch, checkpoint_root=checkpoint_root,
                       tracker_dir=tracker_dir, key_inputs=dict(data=train_parquet, base_model=base_model,
                                                                model_dir=model_dir))
        args = orpo_args(cfg, run.output_dir, dtype, threads, **run.args)
        cls = trainer_class(cfg.get("trainer", "trl"))
        if cfg.get("pair_batches", True) and groups is not None:
            cls = with_grouped_batches(cls, groups, int(cfg.get("seed", 3407)))
        scope, is_fused = cfg.get("nll_scope", "full"), issubclass(cls, fused_trainer())
        if scope != "full" and not is_fused:
            raise ConfigError("train.nll_scope: completion needs train.trainer: fused (TRL's trainer is 'full').")
        extra = {"nll_scope": scope} if is_fused else {}
        if fast:
            extra.update(prefix_sharing=True, chunk_elements=2**25)
        trainer = cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=run.callbacks(log, "rewards/accuracies"), **extra)
        planned = planned_steps(len(dataset), args)
        log.info("ORPO: %d rows, %d planned steps, trainer=%s, backend=%s", len(dataset), planned, cls.__name__,
                 backend)
        result = run.train(trainer, planned)
        log.info("train summary: %s", result.metrics)
        metrics = step_metrics(trainer.state.log_history)
        with save_on_main(trainer) as (main, state):  # rank 0 writes; one process: always
            if main:
                with atomic_path(adapter_dir, is_dir=True) as tmp:
                    unwrapped(trainer).save_pretrained(tmp, safe_serialization=True, state_dict=state)
                    tokenizer.save_pretrained(tmp)
                    write_model_card(
                        Path(tmp), base_model=base_model, experiment=experiment, cfg=cfg, backend=backend,
                        trainer=cls.__name__, metrics=metrics, summary=result.metrics,
                    )
                write_csv(metrics, metrics_csv)
        run.finish()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return metrics
