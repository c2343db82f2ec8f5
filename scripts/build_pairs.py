"""Join prompts and distilled answers into prompt/chosen/rejected rows (rule build_pairs)."""

import pandas as pd

from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.politeness.data import build_pairs

log = setup_logging(snakemake.log[0])
pairs = build_pairs(pd.read_parquet(snakemake.input.prompts), pd.read_parquet(snakemake.input.answers))
log.info("%d preference rows", len(pairs))
write_parquet(pairs, snakemake.output.raw)
