# Input functions and default targets of the release stages (Ollama, quant fidelity, publish).
# Kept apart from the rule files (snakemake --lint); included after rules/common.smk, whose helpers it uses.


def modelfile_inputs(wildcards):
    """The GGUF the Modelfile names; the LoRA GGUF is applied (ADAPTER) on the base model's F16 GGUF."""
    if wildcards.variant == "lora-F16":
        return {"gguf": base_gguf(wildcards), "adapter": gguf_path(wildcards.experiment, "lora-F16")}
    return {"gguf": gguf_path(wildcards.experiment, wildcards.variant)}


def f16_gguf(wildcards):
    return gguf_path(wildcards.experiment, "F16")


def fidelity_settings(wildcards):
    return exp_config(wildcards)["fidelity"]


def quant_names(wildcards):
    return list(exp_config(wildcards)["export"]["quants"])


def quant_ggufs(wildcards):
    return {q: gguf_path(wildcards.experiment, q) for q in quant_names(wildcards)}


def publish_settings(wildcards):
    return exp_config(wildcards)["publish"]


def publish_folders(wildcards=None):
    return [f"results/{exp}/publish" for exp in PREFERENCE_EXPS]


def release_targets(exp):
    """A preference experiment's release: a Modelfile per GGUF, quant fidelity (with quants), the hub folder."""
    if exp not in PREFERENCE_EXPS:
        return []
    quants = config["experiments"][exp]["export"]["quants"]
    targets = [f"results/{exp}/gguf/{exp}-{v}.Modelfile" for v in ["F16", "lora-F16", *quants]]
    if quants:
        targets += [f"results/{exp}/eval/fidelity.csv", f"results/{exp}/report/fidelity.png"]
    return targets + [f"results/{exp}/publish"]
