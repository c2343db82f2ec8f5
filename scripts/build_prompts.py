"""Seeded please / no-please / trap prompts for the politeness rule (rule build_prompts)."""

from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.politeness.data import PairSpec, build_prompts

log = setup_logging(snakemake.log[0])
data = snakemake.params.data
spec = PairSpec(rows=data["rows"], seed=data["seed"], test_fraction=data["test_fraction"],
                trap_fraction=data["trap_fraction"], policy=data["policy"],
                multiturn_fraction=data["multiturn_fraction"])
prompts = build_prompts(spec)
log.info("%d prompts: %s", len(prompts), prompts.groupby(["split", "category"]).size().to_dict())
write_parquet(prompts, snakemake.output.prompts)
