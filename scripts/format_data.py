"""Apply the base model's chat template and write the train / test splits (rule format_data)."""

import pandas as pd
from transformers import AutoTokenizer

from rulebound.datacard import data_card
from rulebound.formatting import format_preferences, split_frame
from rulebound.io import setup_logging, write_parquet, write_text

log = setup_logging(snakemake.log[0])
tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
raw = pd.read_parquet(snakemake.input.raw)
limits = snakemake.params.limits
formatted = format_preferences(raw, tokenizer, system_column="system" if "system" in raw.columns else None,
                               max_length=limits["max_length"], max_prompt_length=limits["max_prompt_length"],
                               overlong=limits["overlong"])
train, test = split_frame(formatted)
log.info("train %d rows, test %d rows (of %d)", len(train), len(test), len(raw))
write_parquet(train, snakemake.output.train)
write_parquet(test, snakemake.output.test)
write_text(data_card(train, test, experiment=snakemake.wildcards.experiment, settings=snakemake.params.data,
                     length_limit=formatted.attrs.get("length_limit")), snakemake.output.card)
