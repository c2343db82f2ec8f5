"""A few held-out truthy prompts answered by one variant, for the report (rule answer_examples)."""

from rulebound.io import setup_logging, write_csv
from rulebound.modelref import ModelRef
from rulebound.tasks.truthy.evaluate import answer_examples

setup_logging(snakemake.log[0])
inputs = dict(snakemake.input.items())
write_csv(answer_examples(ModelRef.from_inputs(inputs), inputs["eval_set"], variant=snakemake.wildcards.variant,
                          settings=snakemake.params.settings, threads=snakemake.threads), snakemake.output.csv)
