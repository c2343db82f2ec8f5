"""Our figures beside the seeds' published ones (rule reproduce)."""

from rulebound.io import setup_logging
from rulebound.report.reproduce import write_reproduction

log = setup_logging(snakemake.log[0])
table = write_reproduction(snakemake.params.experiments, snakemake.output.md, snakemake.output.csv)
log.info("%d rows for %s", len(table), ", ".join(table["experiment"].unique()))
