"""A few held-out prompts answered by one variant, for the report (rule answer_examples)."""

from rulebound.io import setup_logging
from rulebound.tasks import answer_examples

setup_logging(snakemake.log[0])
answer_examples(inputs=dict(snakemake.input.items()), out_csv=snakemake.output.csv,
                variant=snakemake.wildcards.variant, settings=snakemake.params.settings, threads=snakemake.threads)
