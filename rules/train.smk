# LoRA adapters trained with ORPO (TRL), on Unsloth where a CUDA GPU is present.


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
