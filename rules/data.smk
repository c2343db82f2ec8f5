# Preference data every task can use: pairs ingested from data.source (hf:, builtin: or a file), and the
# chat-templated train / test splits of an experiment's raw.parquet. Tasks make their own raw data in
# rules/tasks/<task>.smk.


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
        experiment=one_of(FORMATTED_EXPS),
    log:
        "logs/format_data/{experiment}.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/format_data.py"
