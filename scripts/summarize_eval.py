"""The experiment's summary table from its eval CSVs, by task (rule summarize_eval)."""

from rulebound.io import setup_logging, write_csv
from rulebound.tasks import registry

log = setup_logging(snakemake.log[0])
summary = registry.get(snakemake.params.task).summarize(list(snakemake.input.csvs))
write_csv(summary, snakemake.output.summary)
log.info("summary:\n%s", summary.to_string(index=False))
