# Merge into a 16-bit base, convert to GGUF F16 with llama.cpp's own converter, then quantize.
# A run is a preference experiment (politeness) or a lipogram method (lipogram/sft); its GGUFs are
# results/<run>/gguf/<stem>-<variant>.gguf with the stem the run's name (politeness, lipogram-sft).


rule fetch_llama_cpp:
    output:
        src=directory(LLAMA_CPP_DIR),
    params:
        url=config["llama_cpp"]["url"],
        sha256=config["llama_cpp"]["sha256"],
    log:
        "logs/fetch_llama_cpp/fetch.log",
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/fetch_llama_cpp.py"


rule merge_adapter:
    input:
        base=base_model_dir,
        adapter="results/{experiment}/adapter",
    output:
        merged=directory("results/{experiment}/merged"),
    params:
        dtype=merged_dtype,
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/merge_adapter/{experiment}.log",
    benchmark:
        "benchmarks/merge_adapter/{experiment}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/merge_adapter.py"


rule convert_gguf:
    input:
        merged=rules.merge_adapter.output.merged,
        llama_cpp=rules.fetch_llama_cpp.output.src,
    output:
        gguf="results/{experiment}/gguf/{stem}-F16.gguf",
    params:
        run=run_of_stem,
    log:
        "logs/convert_gguf/{experiment}/{stem}.log",
    benchmark:
        "benchmarks/convert_gguf/{experiment}/{stem}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/convert_gguf.py"


rule quantize_gguf:
    input:
        f16=rules.convert_gguf.output.gguf,
    output:
        gguf="results/{experiment}/gguf/{stem}-{quant}.gguf",
    params:
        quant="{quant}",
        run=run_of_stem,
    log:
        "logs/quantize_gguf/{experiment}/{stem}-{quant}.log",
    benchmark:
        "benchmarks/quantize_gguf/{experiment}/{stem}-{quant}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/quantize_gguf.py"


rule convert_lora_gguf:
    input:
        adapter="results/{experiment}/adapter",
        base=base_model_dir,
        llama_cpp=rules.fetch_llama_cpp.output.src,
    output:
        gguf="results/{experiment}/gguf/{stem}-lora-F16.gguf",
    params:
        run=run_of_stem,
    log:
        "logs/convert_lora_gguf/{experiment}/{stem}.log",
    benchmark:
        "benchmarks/convert_lora_gguf/{experiment}/{stem}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/convert_lora_gguf.py"
