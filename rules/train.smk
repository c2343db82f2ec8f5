# LoRA adapters: ORPO for the preference experiments; SFT and GRPO for the lipogram methods.
# Unsloth where a CUDA GPU and the package are present, transformers + PEFT otherwise.


rule train_orpo:
    input:
        train=rules.format_data.output.train,
        model=base_model_dir,
    output:
        adapter=directory("results/{experiment}/adapter"),
        metrics="results/{experiment}/train/metrics.csv",
    params:
        train=train_settings,
        base=base_model_source,
    wildcard_constraints:
        experiment=one_of(PREFERENCE_EXPS),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/train_orpo/{experiment}.log",
    benchmark:
        "benchmarks/train_orpo/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_orpo.py"


rule train_sft:
    input:
        train=lipogram_sft_data,
        model=base_model_dir,
    output:
        adapter=directory("results/{experiment}/adapter"),
        metrics="results/{experiment}/train/metrics.csv",
    params:
        train=method_settings,
        base=base_model_source,
    wildcard_constraints:
        experiment=one_of(SFT_RUNS),
    resources:
        gpu=1,
    log:
        "logs/train_sft/{experiment}.log",
    benchmark:
        "benchmarks/train_sft/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_sft.py"


rule train_grpo:
    input:
        unpack(grpo_inputs),
    output:
        adapter=directory("results/{experiment}/adapter"),
        metrics="results/{experiment}/train/metrics.csv",
    params:
        train=method_settings,
        base=base_model_source,
    wildcard_constraints:
        experiment=one_of(GRPO_RUNS),
    resources:
        gpu=1,
    log:
        "logs/train_grpo/{experiment}.log",
    benchmark:
        "benchmarks/train_grpo/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_grpo.py"
