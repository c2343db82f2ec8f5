"""Evaluate one variant of an experiment, scored by its task (rules evaluate_hf and evaluate_gguf)."""

from rulebound.io import setup_logging, write_csv
from rulebound.modelref import ModelRef
from rulebound.tasks import registry

setup_logging(snakemake.log[0])
inputs = dict(snakemake.input.items())
scored = registry.get(snakemake.params.task).evaluate(
    ModelRef.from_inputs(inputs), eval_set=inputs["eval_set"], variant=snakemake.wildcards.variant,
    settings=snakemake.params.settings, threads=snakemake.threads)
write_csv(scored, snakemake.output.csv)
