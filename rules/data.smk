# Preference data: generated (seeded prompts -> the base model's own answers -> pairs) or ingested from
# hf:, builtin: or a local file; then chat-templated train / test splits.


rule build_prompts:
    output:
        prompts="results/{experiment}/data/prompts.parquet",
    params:
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(GENERATED_EXPS),
    log:
        "logs/build_prompts/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/build_prompts.py"


rule distill_answers:
    input:
        prompts=rules.build_prompts.output.prompts,
        model=base_model_dir,
    output:
        answers="results/{experiment}/data/answers.parquet",
    params:
        distill=distill_settings,
    wildcard_constraints:
        experiment=one_of(GENERATED_EXPS),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/distill_answers/{experiment}.log",
    benchmark:
        "benchmarks/distill_answers/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/distill_answers.py"


rule build_pairs:
    input:
        prompts=rules.build_prompts.output.prompts,
        answers=rules.distill_answers.output.answers,
    output:
        raw="results/{experiment}/data/raw.parquet",
    wildcard_constraints:
        experiment=one_of(GENERATED_EXPS),
    log:
        "logs/build_pairs/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/build_pairs.py"


rule ingest_pairs:
    output:
        raw="results/{experiment}/data/raw.parquet",
    params:
        data=data_settings,
        task=experiment_task,
    wildcard_constraints:
        experiment=one_of(INGESTED_EXPS),
    log:
        "logs/ingest_pairs/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/ingest_pairs.py"


rule format_data:
    input:
        raw="results/{experiment}/data/raw.parquet",
        model=base_model_dir,
    output:
        train="results/{experiment}/data/train.parquet",
        test="results/{experiment}/data/test.parquet",
        card="results/{experiment}/data/card.md",
    params:
        limits=length_limits,
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(PREFERENCE_EXPS),
    log:
        "logs/format_data/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/format_data.py"


rule build_eval_prompts:
    input:
        test=rules.format_data.output.test,
        train=rules.format_data.output.train,
    output:
        prompts="results/{experiment}/eval/prompts.parquet",
    params:
        suite=suite_settings,
    wildcard_constraints:
        experiment=one_of(experiments_for("politeness")),
    log:
        "logs/build_eval_prompts/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/build_eval_prompts.py"
