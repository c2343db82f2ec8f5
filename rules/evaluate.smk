# Held-out evaluation of every artifact, scored by the experiment's task. HF variants in batches (GPU where
# there is one), GGUF variants on llama.cpp. Variant names: base, adapter, merged and a task's own
# (lipogram: prompt, constrained, a method), and GGUF files: F16, a quant, lora-F16 (the LoRA GGUF over the
# base GGUF), or <name>-<F16|quant>. check_conformance checks every exported GGUF as llama.cpp and Ollama run it.

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
    wildcard_constraints:
        variant=HF_VARIANT,
    threads: eval_threads
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
    wildcard_constraints:
        variant=GGUF_VARIANT,
    log:
        "logs/evaluate_gguf/{experiment}-{variant}.log",
    benchmark:
        "benchmarks/evaluate_gguf/{experiment}-{variant}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/evaluate_variant.py"


rule check_conformance:
    input:
        unpack(conformance_inputs),
    output:
        csv=report(
            "results/{experiment}/eval/conformance.csv",
            category="{experiment}",
            subcategory="Export",
            labels={"table": "GGUF conformance"},
        ),
    params:
        task=experiment_task,
        settings=eval_settings,
        files=conformance_files,
        max_generations=config["conformance"]["max_generations"],
    wildcard_constraints:
        experiment=one_of(CONFORMANCE_EXPS),
    log:
        "logs/check_conformance/{experiment}.log",
    benchmark:
        "benchmarks/check_conformance/{experiment}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/conformance.py"


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
    log:
        "logs/summarize_eval/{experiment}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/summarize_eval.py"
