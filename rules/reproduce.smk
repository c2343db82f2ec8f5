# Our figures beside the seeds' published ones, with the config that produced ours.


rule reproduce:
    input:
        reproduction_inputs,
    output:
        md=report("results/reproduction.md", category="Report", labels={"page": "reproduction"}),
        csv="results/reproduction.csv",
    params:
        experiments=reproduction_settings,
    log:
        "logs/reproduce/reproduce.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/reproduce.py"
