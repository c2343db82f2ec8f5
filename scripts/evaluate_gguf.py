"""Evaluate a GGUF variant (F16 or a quant) through llama.cpp on the test split (rule evaluate_gguf)."""

from rulebound.evaluate import evaluate_gguf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
settings = snakemake.params.settings
evaluate_gguf(snakemake.input.test, snakemake.input.gguf, snakemake.output.csv, variant=snakemake.params.variant,
              max_new_tokens=settings["max_new_tokens"], n_ctx=settings["n_ctx"],
              max_prompts=settings.get("max_prompts"), threads=snakemake.threads)
