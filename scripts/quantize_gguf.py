"""Quantize the F16 GGUF and check the result (rule quantize_gguf)."""

from rulebound.export.gguf import check_gguf_or_remove, quantize_gguf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
quantize_gguf(snakemake.input.f16, snakemake.output.gguf, snakemake.params.quant, threads=snakemake.threads)
check_gguf_or_remove(snakemake.output.gguf, quant=snakemake.params.quant)
