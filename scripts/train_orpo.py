"""ORPO LoRA training (rule train_orpo)."""

from rulebound.io import setup_logging
from rulebound.train.orpo import train_orpo

setup_logging(snakemake.log[0])
train_orpo(
    model_dir=snakemake.input.model,
    base_model=snakemake.params.base,
    train_parquet=snakemake.input.train,
    adapter_dir=snakemake.output.adapter,
    metrics_csv=snakemake.output.metrics,
    cfg=snakemake.params.train,
    experiment=snakemake.wildcards.run,
    threads=snakemake.threads,
)
