# Preference data: seeded prompts -> the base model's own answers -> pairs -> chat-templated splits.


rule build_prompts:
    output:
        prompts="results/{experiment}/data/prompts.parquet",
    params:
        data=data_settings,
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
    log:
        "logs/build_pairs/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/build_pairs.py"


rule format_data:
    input:
        raw=rules.build_pairs.output.raw,
        model=base_model_dir,
    output:
        train="results/{experiment}/data/train.parquet",
        test="results/{experiment}/data/test.parquet",
        card="results/{experiment}/data/card.md",
    params:
        max_length=train_max_length,
        overlong=train_overlong,
        data=data_settings,
    log:
        "logs/format_data/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/format_data.py"
