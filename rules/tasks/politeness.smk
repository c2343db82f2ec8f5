# The politeness task's data: seeded requests with and without please (and substring traps), the base
# model's own answers to them, the preference pairs; and the evaluation set (held-out split + edge cases).
POLITENESS_EXPS = experiments_of("politeness")
POLITENESS_GENERATED = [e for e in POLITENESS_EXPS if e not in INGESTED_EXPS]


def distill_settings(wildcards):
    return exp_config(wildcards)["distill"]


def suite_settings(wildcards):
    """The edge-case suite: the data's policy and seed, and the evaluation's size per category."""
    cfg = exp_config(wildcards)
    return {"policy": cfg["data"]["policy"], "seed": cfg["data"]["seed"],
            "per_category": cfg["evaluate"]["suite_per_category"]}


rule build_prompts:
    output:
        prompts="results/{experiment}/data/prompts.parquet",
    params:
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(POLITENESS_GENERATED),
    log:
        "logs/build_prompts/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_prompts.py"


rule distill_answers:
    input:
        prompts=rules.build_prompts.output.prompts,
        model=base_model_dir,
    output:
        answers="results/{experiment}/data/answers.parquet",
    params:
        distill=distill_settings,
    wildcard_constraints:
        experiment=one_of(POLITENESS_GENERATED),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/distill_answers/{experiment}.log",
    benchmark:
        "benchmarks/distill_answers/{experiment}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/distill_answers.py"


rule build_pairs:
    input:
        prompts=rules.build_prompts.output.prompts,
        answers=rules.distill_answers.output.answers,
    output:
        raw="results/{experiment}/data/raw.parquet",
    wildcard_constraints:
        experiment=one_of(POLITENESS_GENERATED),
    log:
        "logs/build_pairs/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_pairs.py"


rule build_eval_prompts:
    input:
        test=rules.format_data.output.test,
        train=rules.format_data.output.train,
    output:
        prompts="results/{experiment}/eval/prompts.parquet",
    params:
        suite=suite_settings,
    wildcard_constraints:
        experiment=one_of(POLITENESS_EXPS),
    log:
        "logs/build_eval_prompts/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_eval_prompts.py"
