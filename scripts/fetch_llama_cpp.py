"""Fetch llama.cpp's converters from the pinned llama-cpp-python sdist (rule fetch_llama_cpp)."""

from rulebound.export.gguf import fetch_llama_cpp
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
fetch_llama_cpp(snakemake.params.version, snakemake.params.sha256, snakemake.output.src)
