"""The training split's chats as GRPO prompts (rule constitution_grpo_prompts)."""

import pandas as pd

from rulebound.io import setup_logging, write_parquet

log = setup_logging(snakemake.log[0])
train = pd.read_parquet(snakemake.input.train)
prompts = pd.DataFrame({"prompt": train["messages"].drop_duplicates()})
log.info("%d GRPO prompts", len(prompts))
write_parquet(prompts, snakemake.output.prompts)
