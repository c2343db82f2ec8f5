# Held-out evaluation of every artifact: HF variants in batches, GGUF variants through llama.cpp.


rule evaluate_hf:
    input:
        unpack(hf_eval_inputs),
    output:
        csv="results/{experiment}/eval/{variant}.csv",
    params:
        variant="{variant}",
        settings=eval_settings,
    wildcard_constraints:
        variant="|".join(sorted(HF_VARIANTS)),
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/evaluate_hf/{experiment}-{variant}.log",
    benchmark:
        "benchmarks/evaluate_hf/{experiment}-{variant}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/evaluate_hf.py"


rule evaluate_gguf:
    input:
        test="results/{experiment}/data/test.parquet",
        gguf=gguf_for_variant,
    output:
        csv="results/{experiment}/eval/{variant}.csv",
    params:
        variant="{variant}",
        settings=eval_settings,
    wildcard_constraints:
        variant="|".join(sorted(GGUF_VARIANTS)),
    log:
        "logs/evaluate_gguf/{experiment}-{variant}.log",
    benchmark:
        "benchmarks/evaluate_gguf/{experiment}-{variant}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/evaluate_gguf.py"


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
    log:
        "logs/summarize_eval/{experiment}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/summarize_eval.py"
