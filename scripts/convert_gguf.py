"""Convert the merged model to an F16 GGUF and check it (rule convert_gguf)."""

from rulebound.export.gguf import check_gguf_or_remove, convert_hf_to_gguf
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
convert_hf_to_gguf(snakemake.input.merged, snakemake.output.gguf, snakemake.input.llama_cpp, outtype="f16")
check_gguf_or_remove(snakemake.output.gguf)
