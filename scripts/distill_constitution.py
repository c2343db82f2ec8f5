"""The base model answers every request itself, and under a match / avoid rule's instruction (rule
distill_constitution)."""

import pandas as pd

from rulebound.distill import distill_answers
from rulebound.io import setup_logging, write_parquet
from rulebound.tasks.constitution.data import distill_jobs
from rulebound.tasks.constitution.spec import is_fixed_reply, parse_rules

log = setup_logging(snakemake.log[0])
rules, _ = parse_rules(snakemake.params.rules)
prompts = pd.read_parquet(snakemake.input.prompts)
settings = snakemake.params.distill
frames = []
for rule, system_prompt, requests in distill_jobs(rules, prompts):
    answers = distill_answers(snakemake.input.model, requests, threads=snakemake.threads,
                              max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                              max_sentences=settings["max_sentences"], system_prompt=system_prompt,
                              unusable=lambda answer: is_fixed_reply(rules, answer))
    log.info("%s: %d answers, mean %.0f characters", rule or "plain", len(answers), answers["answer"].str.len().mean())
    frames.append(answers.assign(rule=rule))
write_parquet(pd.concat(frames, ignore_index=True), snakemake.output.answers)
