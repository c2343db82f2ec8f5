"""Fetch llama.cpp's converters from the pinned llama-cpp-python sdist (rule fetch_llama_cpp)."""

from rulebound.gguf import fetch_llama_cpp
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
fetch_llama_cpp(snakemake.params.url, snakemake.params.sha256, snakemake.output.src)
