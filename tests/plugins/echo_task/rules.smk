# The echo plug-in's data: its preference pairs (then the pipeline's own formatting, training, export, ...).


def echo_seed(wildcards):
    return config["experiments"][wildcards.experiment]["data"]["seed"]


rule build_echo_pairs:
    output:
        raw="results/{experiment}/data/raw.parquet",
    params:
        seed=echo_seed,
    wildcard_constraints:
        experiment=one_of(experiments_of("echo")),
    log:
        "logs/build_echo_pairs/{experiment}.log",
    run:
        from rulebound.io import write_parquet

        write_parquet(TASK[wildcards.experiment].pairs(params.seed), output.raw)
