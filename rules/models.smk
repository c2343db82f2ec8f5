# Base models as plain Hugging Face folders (safetensors), from embedded:, hf: or a local path.


rule prepare_model:
    output:
        model=directory("resources/models/{model}"),
    params:
        source=model_source_for,
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "benchmarks/prepare_model/{model}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/prepare_model.py"
