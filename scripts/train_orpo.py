"""ORPO LoRA training (rule train_orpo), on as many processes as the rule has GPUs (rulebound.train.distributed)."""

from rulebound.io import setup_logging
from rulebound.train.distributed import train

setup_logging(snakemake.log[0])
train(
    "orpo",
    processes=snakemake.resources.get("gpu", 1),  # the profile's GPUs for this rule: that many processes
    parallel=snakemake.resources.get("parallel", "ddp"),
    model_dir=snakemake.input.model,
    base_model=snakemake.params.base,
    train_parquet=snakemake.input.train,
    adapter_dir=snakemake.output.adapter,
    metrics_csv=snakemake.output.metrics,
    cfg=snakemake.params.train,
    experiment=snakemake.wildcards.run,
    threads=snakemake.threads,
    checkpoint_root=snakemake.params.checkpoints,  # resumed from on a rerun after a crash or time limit
    tracker_dir=snakemake.params.tracker,
)
