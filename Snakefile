# rulebound: teach open LLMs hard behavioural rules at the weight level.
# data -> LoRA adapter -> merged 16-bit model -> GGUF quants -> evaluation -> report, for every experiment of
# config.yaml, each of a task (rulebound/tasks/<task>/), and a reproduction table beside the seeds' figures.
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
include: "rules/release.smk"
include: "rules/reproduce.smk"


# Each task's own rules (its data), for the tasks this config uses: rules/tasks/<task>.smk or a plug-in's.
for _task in sorted({task.name: task for task in TASK.values()}.values(), key=lambda t: t.name):
    if _task.rules_file():

        include: str(_task.rules_file())


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
