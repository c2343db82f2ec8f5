# Ollama Modelfiles next to each GGUF: the chat template translated to Go, stop tokens, default system prompt.


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


rule ollama_modelfile:
    input:
        unpack(modelfile_inputs),
    output:
        modelfile="results/{experiment}/gguf/{experiment}-{variant}.Modelfile",
    wildcard_constraints:
        experiment=one_of(PREFERENCE_EXPS),
        variant=one_of(sorted(GGUF_VARIANTS | {"lora-F16"})),
    log:
        "logs/ollama_modelfile/{experiment}-{variant}.log",
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/ollama_modelfile.py"
