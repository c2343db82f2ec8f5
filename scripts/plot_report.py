"""Training curves and the per-variant correct rate figure (rule plot_report)."""

from rulebound.io import setup_logging
from rulebound.report import plot_eval, plot_training_curves

log = setup_logging(snakemake.log[0])
panels = plot_training_curves(snakemake.input.metrics, snakemake.output.curves)
log.info("training panels: %s", ", ".join(panels) or "none")
plot_eval(snakemake.input.summary, snakemake.output.eval)
