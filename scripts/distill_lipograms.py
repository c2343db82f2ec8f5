"""The base model answers training prompts under constrained decoding (rule distill_lipograms)."""

import pandas as pd

from rulebound.generate import hf_generate
from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.lipogram.constraint import LetterBan

log = setup_logging(snakemake.log[0])
data = snakemake.params.data
prompts = pd.read_parquet(snakemake.input.prompts)["prompt"].tolist()[: data["distill_prompts"]]
answers = hf_generate(snakemake.input.model, [[{"role": "user", "content": p}] for p in prompts],
                      max_new_tokens=data["max_new_tokens"], batch_size=data["batch_size"],
                      threads=snakemake.threads, constraint=LetterBan(snakemake.params.letter))
log.info("%d constrained answers", len(answers))
write_parquet(pd.DataFrame({"prompt": prompts, "answer": answers}), snakemake.output.answers)
