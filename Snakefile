# rulebound: teach open LLMs hard behavioural rules at the weight level.
# data -> LoRA adapter -> merged 16-bit model -> GGUF quants -> evaluation -> report, for three
# experiments (politeness, truthy, lipogram) and a reproduction table beside the seeds' figures.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/lipogram.smk"
include: "rules/train.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/common_release.smk"
include: "rules/ollama.smk"
include: "rules/fidelity.smk"
include: "rules/publish.smk"
include: "rules/reproduce.smk"


rule all:
    default_target: True
    input:
        all_targets(),


# One target rule per experiment: `snakemake --cores 2 truthy` builds that experiment alone.
for _exp in EXPERIMENTS:

    rule:
        name:
            _exp
        input:
            experiment_targets(_exp),
