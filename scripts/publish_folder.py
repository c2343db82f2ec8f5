"""The adapter as a hub folder: weights, config, model card with the eval table, training curves (rule publish_folder)."""

from rulebound.io import setup_logging
from rulebound.export.publish import build_publish_folder

setup_logging(snakemake.log[0])
build_publish_folder(
    snakemake.input.adapter,
    snakemake.input.summary,
    [snakemake.input.curves],
    snakemake.output.folder,
    experiment=snakemake.wildcards.experiment,
    base_model=snakemake.params.base,
    license=snakemake.params.settings["license"],
)
