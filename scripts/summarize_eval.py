"""Correct rate per variant and group with Wilson intervals (rule summarize_eval)."""

from rulebound.evaluate import write_summary
from rulebound.io import setup_logging

log = setup_logging(snakemake.log[0])
summary = write_summary(list(snakemake.input.csvs), snakemake.output.summary)
log.info("summary:\n%s", summary.to_string(index=False))
