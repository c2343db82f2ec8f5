"""Training curves and the evaluation figure of one experiment (rule plot_report)."""

from rulebound.io import setup_logging
from rulebound.tasks import plot

log = setup_logging(snakemake.log[0])
readings = plot(snakemake.params.task, metrics_csvs=list(snakemake.input.metrics),
                summary_csv=snakemake.input.summary, eval_csvs=list(snakemake.input.evals),
                curves_png=snakemake.output.curves, eval_png=snakemake.output.eval)
for reading in readings:
    log.info("training panel %s", reading)
if not readings:
    log.warning("no training panel could be drawn from %s", ", ".join(map(str, snakemake.input.metrics)))
