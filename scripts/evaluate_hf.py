"""Evaluate an HF variant (base, adapter, merged) on the test split (rule evaluate_hf)."""

from rulebound.evaluate import evaluate_hf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
settings = snakemake.params.settings
evaluate_hf(snakemake.input.test, snakemake.input.model, snakemake.output.csv, variant=snakemake.params.variant,
            adapter_dir=snakemake.input.get("adapter"), max_new_tokens=settings["max_new_tokens"],
            batch_size=settings["batch_size"], max_prompts=settings.get("max_prompts"), threads=snakemake.threads)
