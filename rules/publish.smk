# The adapter as a hub folder (weights, config, model card with the eval table, curves), and the push.
# `snakemake publish` pushes every experiment whose publish.repo_id is set, when HF_TOKEN is set.


rule publish_folder:
    input:
        adapter="results/{experiment}/adapter",
        summary=rules.summarize_eval.output.summary,
        curves=rules.plot_report.output.curves,
    output:
        folder=directory("results/{experiment}/publish"),
    params:
        base=base_model_source,
        settings=publish_settings,
    wildcard_constraints:
        experiment=one_of(PREFERENCE_EXPS),
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
        settings={exp: config["experiments"][exp]["publish"] for exp in PREFERENCE_EXPS},
    localrule: True
    log:
        "logs/publish/publish.log",
    conda:
        "../envs/publish.yaml"
    script:
        "../scripts/publish.py"
