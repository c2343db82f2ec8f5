"""The politeness eval set: the held-out split plus the seed's edge-case suite (rule build_eval_prompts)."""

import pandas as pd

from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.politeness.suite import assert_disjoint, build_suite, eval_set

log = setup_logging(snakemake.log[0])
suite_cfg = snakemake.params.suite
suite = build_suite(suite_cfg["policy"], seed=suite_cfg["seed"], per_category=suite_cfg["per_category"])
assert_disjoint(suite, pd.read_parquet(snakemake.input.train))
prompts = eval_set(pd.read_parquet(snakemake.input.test), suite)
log.info("%d eval prompts per variant: %s", len(prompts), prompts.groupby("category").size().to_dict())
write_parquet(prompts, snakemake.output.prompts)
