"""The experiment's summary table from its eval CSVs, by task (rule summarize_eval)."""

from rulebound.io import setup_logging
from rulebound.tasks import summarize

log = setup_logging(snakemake.log[0])
summary = summarize(snakemake.params.task, list(snakemake.input.csvs), snakemake.output.summary)
log.info("summary:\n%s", summary.to_string(index=False))
