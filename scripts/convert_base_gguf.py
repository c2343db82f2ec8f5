"""Convert a base model folder to an F16 GGUF, the base for the LoRA GGUF in Ollama (rule convert_base_gguf)."""

from rulebound.export.gguf import check_gguf_or_remove, convert_hf_to_gguf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
convert_hf_to_gguf(snakemake.input.model, snakemake.output.gguf, snakemake.input.llama_cpp, outtype="f16")
check_gguf_or_remove(snakemake.output.gguf)
