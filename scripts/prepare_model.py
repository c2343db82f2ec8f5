"""Materialize a base model source as an HF folder (rule prepare_model)."""

from rulebound.io import setup_logging
from rulebound.models import prepare_model

setup_logging(snakemake.log[0])
prepare_model(snakemake.params.source, snakemake.output.model)
