# Merge into a 16-bit base, convert to GGUF F16 with llama.cpp's own converter, then quantize, for every
# exported run: results/<run>/gguf/<stem>-<variant>.gguf with the stem the run's name (politeness,
# lipogram-sft); the LoRA GGUF is <stem>-lora-F16.gguf, applied on the base model's F16 GGUF.


rule fetch_llama_cpp:
    output:
        src=directory(LLAMA_CPP_DIR),
    params:
        version=config["llama_cpp"]["version"],
        sha256=config["llama_cpp"]["sha256"],
    log:
        "logs/fetch_llama_cpp/fetch.log",
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/fetch_llama_cpp.py"


rule convert_base_gguf:
    input:
        model="resources/models/{model}",
        llama_cpp=rules.fetch_llama_cpp.output.src,
    output:
        gguf="resources/gguf/{model}-F16.gguf",
    log:
        "logs/convert_base_gguf/{model}.log",
    benchmark:
        "benchmarks/convert_base_gguf/{model}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/convert_base_gguf.py"


rule merge_adapter:
    input:
        base=run_base_dir,
        adapter="results/{run}/adapter",
    output:
        merged=directory("results/{run}/merged"),
    params:
        dtype=merged_dtype,
    resources:
        gpu=1,  # runs on CPU too; GPU profiles schedule and place it by this
    log:
        "logs/merge_adapter/{run}.log",
    benchmark:
        "benchmarks/merge_adapter/{run}.tsv"
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/merge_adapter.py"


rule convert_gguf:
    input:
        merged=rules.merge_adapter.output.merged,
        llama_cpp=rules.fetch_llama_cpp.output.src,
    output:
        gguf="results/{run}/gguf/{stem}-F16.gguf",
    params:
        run=run_of_stem,
    log:
        "logs/convert_gguf/{run}/{stem}.log",
    benchmark:
        "benchmarks/convert_gguf/{run}/{stem}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/convert_gguf.py"


rule quantize_gguf:
    input:
        f16=rules.convert_gguf.output.gguf,
    output:
        gguf="results/{run}/gguf/{stem}-{quant}.gguf",
    params:
        quant="{quant}",
        run=run_of_stem,
    log:
        "logs/quantize_gguf/{run}/{stem}-{quant}.log",
    benchmark:
        "benchmarks/quantize_gguf/{run}/{stem}-{quant}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/quantize_gguf.py"


rule convert_lora_gguf:
    input:
        adapter="results/{run}/adapter",
        base=run_base_dir,
        llama_cpp=rules.fetch_llama_cpp.output.src,
    output:
        gguf="results/{run}/gguf/{stem}-lora-F16.gguf",
    params:
        run=run_of_stem,
    log:
        "logs/convert_lora_gguf/{run}/{stem}.log",
    benchmark:
        "benchmarks/convert_lora_gguf/{run}/{stem}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/convert_lora_gguf.py"
