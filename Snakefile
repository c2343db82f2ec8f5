# rulebound: teach open LLMs hard behavioural rules at the weight level.
# data -> LoRA adapter -> merged 16-bit model -> GGUF quants -> evaluation -> report
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/common_release.smk"
include: "rules/ollama.smk"
include: "rules/fidelity.smk"
include: "rules/publish.smk"


rule all:
    default_target: True
    input:
        all_targets(),
