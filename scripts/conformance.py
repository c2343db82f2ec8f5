"""Check every exported GGUF of an experiment as llama.cpp and Ollama run it (rule check_conformance)."""

from rulebound.export.conformance import check_conformance, token_limit, write_conformance
from rulebound.io import setup_logging
from rulebound.tasks import registry

setup_logging(snakemake.log[0])
settings = snakemake.params.settings
chats = registry.get(snakemake.params.task).conversations(snakemake.input.eval_set, settings)
table = check_conformance(snakemake.params.files, snakemake.input.tokenizer, chats,
                          limit=token_limit(settings.get("max_new_tokens")), n_ctx=settings.get("n_ctx", 1024),
                          threads=snakemake.threads, max_generations=snakemake.params.max_generations)
write_conformance(table, snakemake.output.csv)
