# Quantization fidelity: KL divergence and top-token agreement of each quant GGUF against the F16 GGUF.


rule quant_fidelity:
    input:
        unpack(quant_ggufs),
        test="results/{experiment}/data/test.parquet",
        reference=f16_gguf,
    output:
        csv=report(
            "results/{experiment}/eval/fidelity.csv",
            category="{experiment}",
            subcategory="Quantization",
            labels={"table": "fidelity"},
        ),
        png=report(
            "results/{experiment}/report/fidelity.png",
            category="{experiment}",
            subcategory="Quantization",
            labels={"figure": "KL divergence vs F16"},
        ),
    params:
        quants=quant_names,
        settings=fidelity_settings,
    wildcard_constraints:
        experiment=one_of(PREFERENCE_EXPS),
    log:
        "logs/quant_fidelity/{experiment}.log",
    benchmark:
        "benchmarks/quant_fidelity/{experiment}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/quant_fidelity.py"
