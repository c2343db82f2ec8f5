"""Training curves and the evaluation figure of one experiment, drawn by its task (rule plot_report)."""

from rulebound.io import setup_logging
from rulebound.tasks import registry

log = setup_logging(snakemake.log[0])
readings = registry.get(snakemake.params.task).plot(
    metrics=dict(snakemake.params.metrics), summary=snakemake.input.summary, evals=dict(snakemake.params.evals),
    curves_png=snakemake.output.curves, eval_png=snakemake.output.eval)
for reading in readings:
    log.info("training panel %s", reading)
if not readings:
    log.warning("no training panel could be drawn from %s", ", ".join(map(str, snakemake.input.metrics)))
