"""One self-contained HTML page over every experiment (rule render_report)."""

from rulebound.io import setup_logging
from rulebound.report.html import render_html

log = setup_logging(snakemake.log[0])
experiments = dict(snakemake.params.experiments)
log.info("report covers %s", ", ".join(experiments))
render_html(experiments, snakemake.output.html)
