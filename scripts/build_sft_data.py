"""SFT rows without the letter: distilled answers, the shipped Q/A set, filtered dialogues (rule build_sft_data)."""

import pandas as pd

from rulebound.io import setup_logging, write_parquet, write_text
from rulebound.tasks.lipogram.data import build_sft_rows, sft_card

log = setup_logging(snakemake.log[0])
data, letter = snakemake.params.data, snakemake.params.letter
sft, stats = build_sft_rows(pd.read_parquet(snakemake.input.answers),
                            eval_prompts=pd.read_parquet(snakemake.input.eval_prompts)["prompt"].tolist(),
                            letter=letter, shipped_qa=data["shipped_qa"], source=data["source"], split=data["split"], seed=data["seed"])
log.info("%d SFT rows; filters: %s", len(sft), stats)
write_parquet(sft, snakemake.output.sft)
write_text(sft_card(sft, stats, experiment=snakemake.wildcards.experiment, letter=letter, settings=data),
           snakemake.output.card)
