# Held-out evaluation of every artifact, scored by the experiment's task (the rule followed, preference
# accuracy, lipogram metrics). HF variants in batches (GPU where there is one), GGUF variants on llama.cpp.
# Variant names: base, adapter, merged, a lipogram method or baseline, and GGUF files: F16, Q4_K_M,
# lora-F16 (the LoRA GGUF over the base GGUF), <method>-<quant>, constrained-F16.

VARIANTS = sorted({v for cfg in config["experiments"].values() for v in cfg["evaluate"]["variants"]})
GGUF_VARIANT = f"([a-z][a-z0-9_]*-)?({one_of(sorted(GGUF_VARIANTS))})"
HF_VARIANT = one_of([v for v in VARIANTS if not re.fullmatch(GGUF_VARIANT, v)])


rule evaluate_hf:
    input:
        unpack(variant_inputs),
    output:
        csv="results/{experiment}/eval/{variant}.csv",
    params:
        task=experiment_task,
        settings=eval_settings,
        letter=lipogram_letter,
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
        variant=HF_VARIANT,
    threads: eval_hf_threads
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/evaluate_hf/{experiment}-{variant}.log",
    benchmark:
        "benchmarks/evaluate_hf/{experiment}-{variant}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/evaluate_variant.py"


rule evaluate_gguf:
    input:
        unpack(variant_inputs),
    output:
        csv="results/{experiment}/eval/{variant}.csv",
    params:
        task=experiment_task,
        settings=eval_settings,
        letter=lipogram_letter,
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
        variant=GGUF_VARIANT,
    log:
        "logs/evaluate_gguf/{experiment}-{variant}.log",
    benchmark:
        "benchmarks/evaluate_gguf/{experiment}-{variant}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/evaluate_variant.py"


rule answer_examples:
    input:
        unpack(variant_inputs),
    output:
        csv="results/{experiment}/eval/examples/{variant}.csv",
    params:
        settings=eval_settings,
    wildcard_constraints:
        experiment=one_of(experiments_for("truthy")),
    log:
        "logs/answer_examples/{experiment}-{variant}.log",
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/answer_examples.py"


rule summarize_eval:
    input:
        csvs=eval_csvs,
    output:
        summary=report(
            "results/{experiment}/eval/summary.csv",
            category="{experiment}",
            subcategory="Evaluation",
            labels={"table": "summary"},
        ),
    params:
        task=experiment_task,
    wildcard_constraints:
        experiment=one_of(EXPERIMENTS),
    log:
        "logs/summarize_eval/{experiment}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/summarize_eval.py"
