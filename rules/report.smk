# Figures per experiment and one HTML report; `snakemake --report report.html` collects the same figures.


rule plot_report:
    input:
        metrics=run_metrics,
        summary=rules.summarize_eval.output.summary,
        evals=eval_csvs,
    output:
        curves=report(
            "results/{experiment}/report/training_curves.png",
            category="{experiment}",
            subcategory="Training",
            labels={"figure": "training curves"},
        ),
        eval=report(
            "results/{experiment}/report/eval.png",
            category="{experiment}",
            subcategory="Evaluation",
            labels={"figure": "evaluation per variant"},
        ),
    params:
        task=experiment_task,
        metrics=run_metrics_map,
        evals=eval_csv_map,
    log:
        "logs/plot_report/{experiment}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/plot_report.py"


rule render_report:
    input:
        report_inputs,
    output:
        html=report("results/report.html", category="Report", labels={"page": "rulebound report"}),
    params:
        experiments=report_mapping,
    log:
        "logs/render_report/report.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/render_report.py"
