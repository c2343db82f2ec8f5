"""Chosen (compliant) and rejected (non-compliant) answers for every prompt (rule build_constitution_pairs)."""

import pandas as pd

from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.constitution.data import build_pairs
from rulebound.tasks.constitution.spec import parse_rules

log = setup_logging(snakemake.log[0])
rules, _ = parse_rules(snakemake.params.rules)
pairs = build_pairs(rules, pd.read_parquet(snakemake.input.prompts), pd.read_parquet(snakemake.input.answers),
                    seed=snakemake.params.data["seed"])
log.info("%d preference rows: %s", len(pairs), pairs.groupby(["split", "category"]).size().to_dict())
write_parquet(pairs, snakemake.output.raw)
