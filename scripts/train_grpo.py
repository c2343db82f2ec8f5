"""GRPO LoRA training with the configured rewards, from the base model or another method's adapter (rule train_grpo)."""

from rulebound.io import setup_logging
from rulebound.train.distributed import train

setup_logging(snakemake.log[0])
train(
    "grpo",
    processes=snakemake.resources.get("gpu", 1),  # the profile's GPUs for this rule: that many processes
    parallel=snakemake.resources.get("parallel", "ddp"),
    model_dir=snakemake.input.model,
    base_model=snakemake.params.base,
    prompts_parquet=snakemake.input.prompts,
    adapter_dir=snakemake.output.adapter,
    metrics_csv=snakemake.output.metrics,
    cfg=snakemake.params.train,
    experiment=snakemake.wildcards.run,
    threads=snakemake.threads,
    checkpoint_root=snakemake.params.checkpoints,  # resumed from on a rerun after a crash or time limit
    tracker_dir=snakemake.params.tracker,
    init_adapter=snakemake.input.get("init_adapter"),
)
