"""Merge the LoRA adapter into the 16-bit base model (rule merge_adapter)."""

from rulebound.io import setup_logging
from rulebound.export.merge import merge_adapter

setup_logging(snakemake.log[0])
merge_adapter(snakemake.input.base, snakemake.input.adapter, snakemake.output.merged, dtype=snakemake.params.dtype)
