# The truthy task: its data is ingested (rules/data.smk); here, a few held-out prompts answered by each
# variant, for the report's example table.


rule answer_examples:
    input:
        unpack(variant_inputs),
    output:
        csv="results/{experiment}/eval/examples/{variant}.csv",
    params:
        settings=eval_settings,
    wildcard_constraints:
        experiment=one_of(experiments_of("truthy")),
    log:
        "logs/answer_examples/{experiment}-{variant}.log",
    conda:
        "../../envs/export.yaml"
    script:
        "../../scripts/answer_examples.py"
