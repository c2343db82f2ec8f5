"""Prompts labelled by the constitution's rules, and the rules as written (rule build_constitution_prompts)."""

import json

from rulebound.io import setup_logging, write_parquet, write_text
from rulebound.tasks.constitution.data import PromptSpec, build_prompts
from rulebound.tasks.constitution.spec import parse_rules

log = setup_logging(snakemake.log[0])
rules, problems = parse_rules(snakemake.params.rules)
assert not problems, problems  # the config check has run before any job
data = snakemake.params.data
spec = PromptSpec(requests=data["requests"], max_examples=data["max_examples"], seed=data["seed"], test_fraction=data["test_fraction"],
                  multiturn_fraction=data["multiturn_fraction"], bank=data["bank"], wrappers=data["wrappers"],
                  followups=tuple(data["followups"]))
prompts = build_prompts(rules, spec)
log.info("%d prompts: %s", len(prompts), prompts.groupby(["split", "category"]).size().to_dict())
write_parquet(prompts, snakemake.output.prompts)
write_text(json.dumps(snakemake.params.rules, indent=2, ensure_ascii=False), snakemake.output.rules)
