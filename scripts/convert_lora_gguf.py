"""Convert the LoRA adapter to a GGUF adapter for llama.cpp's --lora (rule convert_lora_gguf)."""

from rulebound.export.gguf import convert_lora_to_gguf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
convert_lora_to_gguf(snakemake.input.adapter, snakemake.input.base, snakemake.output.gguf, snakemake.input.llama_cpp)
