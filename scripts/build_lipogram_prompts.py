"""GRPO / distillation prompts and disjoint held-out prompts for a lipogram experiment."""

from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.lipogram.data import build_prompt_splits

log = setup_logging(snakemake.log[0])
data = snakemake.params.data
train, held_out = build_prompt_splits(seed=data["seed"], train_prompts=data["train_prompts"])
log.info("%d training prompts, %d held-out prompts", len(train), len(held_out))
write_parquet(train, snakemake.output.prompts)
write_parquet(held_out, snakemake.output.eval_prompts)
