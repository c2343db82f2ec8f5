"""Write an Ollama Modelfile next to a GGUF; the LoRA variant applies the adapter GGUF on the base (rule ollama_modelfile)."""

from rulebound.io import setup_logging
from rulebound.export.ollama import write_modelfile

setup_logging(snakemake.log[0])
write_modelfile(snakemake.input.gguf, snakemake.output.modelfile, adapter_gguf=snakemake.input.get("adapter"))
