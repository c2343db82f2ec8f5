# Release files: an Ollama Modelfile next to every exported GGUF (the chat template translated to Go, stop
# tokens, default system prompt); for a task's release run, quant fidelity against F16 and the adapter as a
# hub folder, pushed by `snakemake publish` when publish.repo_id and HF_TOKEN are set.


def modelfile_inputs(wildcards):
    """The GGUF the Modelfile names; the LoRA GGUF is applied (ADAPTER) on the base model's F16 GGUF."""
    run = RUNS[wildcards.run]
    if wildcards.variant == "lora-F16":
        return {"gguf": paths.base_gguf(run_model(wildcards)), "adapter": paths.gguf_path(run, "lora-F16")}
    return {"gguf": paths.gguf_path(run, wildcards.variant)}


def fidelity_settings(wildcards):
    return exp_config(wildcards)["fidelity"]


def quant_names(wildcards):
    return quant_names_of(wildcards.experiment)


def quant_ggufs(wildcards):
    run = RUNS[release_run(wildcards.experiment)]
    return {q: paths.gguf_path(run, q) for q in quant_names(wildcards)}


def f16_gguf(wildcards):
    return paths.gguf_path(RUNS[release_run(wildcards.experiment)], "F16")


def release_adapter(wildcards):
    return paths.adapter_dir(release_run(wildcards.experiment))


def publish_settings(wildcards):
    return exp_config(wildcards)["publish"]


RELEASED_EXPS = [exp for exp in EXPERIMENTS if release_run(exp)]


def publish_folders(wildcards=None):
    return [f"results/{exp}/publish" for exp in RELEASED_EXPS]


rule ollama_modelfile:
    input:
        unpack(modelfile_inputs),
    output:
        modelfile="results/{run}/gguf/{stem}-{variant}.Modelfile",
    params:
        run=run_of_stem,
    wildcard_constraints:
        run=one_of(EXPORTED),
        variant=one_of(sorted(GGUF_VARIANTS | {"lora-F16"})),
    log:
        "logs/ollama_modelfile/{run}/{stem}-{variant}.log",
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/ollama_modelfile.py"


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
        experiment=one_of(RELEASED_EXPS),
    log:
        "logs/quant_fidelity/{experiment}.log",
    benchmark:
        "benchmarks/quant_fidelity/{experiment}.tsv"
    conda:
        "../envs/export.yaml"
    script:
        "../scripts/quant_fidelity.py"


rule publish_folder:
    input:
        adapter=release_adapter,
        summary=rules.summarize_eval.output.summary,
        curves=rules.plot_report.output.curves,
    output:
        folder=directory("results/{experiment}/publish"),
    params:
        base=base_model_source,
        settings=publish_settings,
    wildcard_constraints:
        experiment=one_of(RELEASED_EXPS),
    log:
        "logs/publish_folder/{experiment}.log",
    conda:
        "../envs/publish.yaml"
    script:
        "../scripts/publish_folder.py"


rule publish:
    input:
        folders=publish_folders,
    params:
        settings={exp: config["experiments"][exp]["publish"] for exp in RELEASED_EXPS},
    localrule: True
    log:
        "logs/publish/publish.log",
    conda:
        "../envs/publish.yaml"
    script:
        "../scripts/publish.py"
