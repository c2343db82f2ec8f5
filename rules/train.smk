# LoRA adapters: one rule per training method, for every run whose method it is (a run is an experiment's
# training, or one of its methods: results/<run>/adapter). Unsloth where a CUDA GPU and the package are
# present, transformers + PEFT otherwise. Each writes trainer checkpoints to checkpoints/<run>/<key>/ every
# train.save_steps steps and resumes from the newest complete one on a rerun; they go once the adapter is written.


rule train_orpo:
    input:
        unpack(run_inputs),
    output:
        adapter=directory("results/{run}/adapter"),
        metrics="results/{run}/train/metrics.csv",
    params:
        train=run_settings,
        base=run_base_source,
        checkpoints=run_checkpoints,
        tracker=run_tracker,
    wildcard_constraints:
        run=one_of(RUNS_BY_METHOD["orpo"]),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/train_orpo/{run}.log",
    benchmark:
        "benchmarks/train_orpo/{run}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_orpo.py"


rule train_sft:
    input:
        unpack(run_inputs),
    output:
        adapter=directory("results/{run}/adapter"),
        metrics="results/{run}/train/metrics.csv",
    params:
        train=run_settings,
        base=run_base_source,
        checkpoints=run_checkpoints,
        tracker=run_tracker,
    wildcard_constraints:
        run=one_of(RUNS_BY_METHOD["sft"]),
    resources:
        gpu=1,
    log:
        "logs/train_sft/{run}.log",
    benchmark:
        "benchmarks/train_sft/{run}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_sft.py"


rule train_grpo:
    input:
        unpack(run_inputs),
    output:
        adapter=directory("results/{run}/adapter"),
        metrics="results/{run}/train/metrics.csv",
    params:
        train=run_settings,
        base=run_base_source,
        checkpoints=run_checkpoints,
        tracker=run_tracker,
    wildcard_constraints:
        run=one_of(RUNS_BY_METHOD["grpo"]),
    resources:
        gpu=1,
    log:
        "logs/train_grpo/{run}.log",
    benchmark:
        "benchmarks/train_grpo/{run}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_grpo.py"
