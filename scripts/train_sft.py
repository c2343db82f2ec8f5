"""SFT LoRA training on the lipogram answers (rule train_sft)."""

from rulebound.io import setup_logging
from rulebound.train.distributed import train

setup_logging(snakemake.log[0])
train(
    "sft",
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
