"""The base model answers every distinct request itself (rule distill_answers)."""

import pandas as pd

from rulebound.distill import distill_answers
from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.politeness.rule import is_refusal

log = setup_logging(snakemake.log[0])
prompts = pd.read_parquet(snakemake.input.prompts)
settings = snakemake.params.distill
answers = distill_answers(snakemake.input.model, prompts["request"].tolist(), threads=snakemake.threads,
                          max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                          max_sentences=settings["max_sentences"], unusable=is_refusal)
log.info("distilled %d answers, mean %.0f characters", len(answers), answers["answer"].str.len().mean())
write_parquet(answers, snakemake.output.answers)
