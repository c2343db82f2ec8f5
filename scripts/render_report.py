"""One self-contained HTML page over every experiment (rule render_report)."""

from rulebound.io import setup_logging
from rulebound.report_html import group_report_files, render_html

log = setup_logging(snakemake.log[0])
experiments = group_report_files(list(snakemake.input))
log.info("report covers %s", ", ".join(experiments))
render_html(experiments, snakemake.output.html, tasks=dict(snakemake.params.tasks))
