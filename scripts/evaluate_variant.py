"""Evaluate one variant of an experiment, scored by its task (rules evaluate_hf and evaluate_gguf)."""

from rulebound.io import setup_logging
from rulebound.tasks import evaluate_variant

setup_logging(snakemake.log[0])
evaluate_variant(snakemake.params.task, inputs=dict(snakemake.input.items()), out_csv=snakemake.output.csv,
                 variant=snakemake.wildcards.variant, settings=snakemake.params.settings,
                 letter=snakemake.params.letter, threads=snakemake.threads)
