# The constitution task's data, derived from its rules: prompts labelled by the rules (and the rules as
# written, for the report), the base model's own answers, the preference pairs; GRPO prompts for a GRPO run.
from rulebound.tasks.constitution import rule_dicts

CONSTITUTION_EXPS = experiments_of("constitution")


def constitution_rules(wildcards):
    """The rules as plain data: editing a rule reruns the data, training and evaluation it feeds."""
    return rule_dicts(exp_config(wildcards))


def constitution_distill(wildcards):
    return exp_config(wildcards)["distill"]


rule build_constitution_prompts:
    output:
        prompts="results/{experiment}/data/prompts.parquet",
        rules="results/{experiment}/data/rules.json",
    params:
        rules=constitution_rules,
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(CONSTITUTION_EXPS),
    log:
        "logs/build_constitution_prompts/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_constitution_prompts.py"


rule distill_constitution:
    input:
        prompts=rules.build_constitution_prompts.output.prompts,
        model=base_model_dir,
    output:
        answers="results/{experiment}/data/answers.parquet",
    params:
        rules=constitution_rules,
        distill=constitution_distill,
    wildcard_constraints:
        experiment=one_of(CONSTITUTION_EXPS),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/distill_constitution/{experiment}.log",
    benchmark:
        "benchmarks/distill_constitution/{experiment}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/distill_constitution.py"


rule build_constitution_pairs:
    input:
        prompts=rules.build_constitution_prompts.output.prompts,
        answers=rules.distill_constitution.output.answers,
    output:
        raw="results/{experiment}/data/raw.parquet",
    params:
        rules=constitution_rules,
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(CONSTITUTION_EXPS),
    log:
        "logs/build_constitution_pairs/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_constitution_pairs.py"


rule constitution_grpo_prompts:
    input:
        train="results/{experiment}/data/train.parquet",
    output:
        prompts="results/{experiment}/data/grpo_prompts.parquet",
    wildcard_constraints:
        experiment=one_of(CONSTITUTION_EXPS),
    log:
        "logs/constitution_grpo_prompts/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/constitution_grpo_prompts.py"
