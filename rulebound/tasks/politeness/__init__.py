"""politeness (seed 000): answer only when the user says "please", otherwise refuse with one fixed line.

Data: seeded requests wrapped with and without please (and substring traps), answered by the base model's
own distilled answers (``rules/tasks/politeness.smk``), or pairs ingested from ``data.source``. One ORPO
run. Evaluation: the held-out split plus the seed's edge-case suite on every artifact, scored by the rule.
"""

from __future__ import annotations

from rulebound.modelref import ModelRef
from rulebound.tasks.base import Task


class PolitenessTask(Task):
    name = "politeness"
    seed = "000"
    summary = 'answer only when the user says "please"'

    def ingest(self, data: dict):
        import pandas as pd

        from rulebound.ingest import load_preference_source, split_holdout
        from rulebound.tasks.politeness.data import label_ingested

        df, report = load_preference_source(data["source"], invalid_rows=data["invalid_rows"],
                                            split=data.get("split", "train"))
        df = label_ingested(df, data["policy"])
        train, test = split_holdout(df, data["test_fraction"], data["seed"])
        return pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True), report

    def eval_set(self, name: str, exp: dict) -> str:
        return f"results/{name}/eval/prompts.parquet"

    def eval_threads(self, exp: dict) -> int:
        # ~200 prompts: a second thread pays here, not on the smaller sets (docs/benchmarks.md)
        return 2

    def evaluate(self, model: ModelRef, *, eval_set, variant, settings, threads=1):
        from rulebound.tasks.politeness.evaluate import evaluate

        return evaluate(model, eval_set, variant=variant, max_new_tokens=settings["max_new_tokens"],
                        batch_size=settings["batch_size"], n_ctx=settings["n_ctx"],
                        max_prompts=settings.get("max_prompts"), threads=threads)

    def summarize(self, eval_csvs):
        from rulebound.tasks.politeness.evaluate import summarize

        return summarize(eval_csvs)

    def conversations(self, eval_set, settings):
        from rulebound.tasks.politeness.evaluate import conversations_for, read_eval_set

        return conversations_for(read_eval_set(eval_set, settings.get("max_prompts")))

    def plot(self, *, metrics, summary, evals, curves_png, eval_png):
        from rulebound.report.figures import plot_training_curves
        from rulebound.tasks.politeness.report import SEED_READINGS, plot_eval_heatmap

        (metrics_csv,) = metrics.values()
        readings = plot_training_curves(metrics_csv, curves_png, seed_readings=SEED_READINGS,
                                        title="ORPO training (politeness)")
        plot_eval_heatmap(summary, eval_png)
        return readings

    def html_section(self, entry):
        from rulebound.tasks.politeness.report import html_section

        return html_section(entry)

    def reproduction_inputs(self, name, exp):
        from rulebound.tasks import paths
        from rulebound.tasks.politeness.reproduce import examples_variant

        return super().reproduction_inputs(name, exp) + [paths.eval_csv(name, examples_variant(exp))]

    def quality_checks(self, name, exp, root):
        from rulebound.tasks.politeness.quality import quality_checks

        return quality_checks(name, exp, root)

    def seed_comparison(self, exp, model_source):
        from rulebound.tasks.politeness.reproduce import comparison

        return comparison(exp, model_source)

    def reproduction_rows(self, name, exp, *, model_source, root):
        from rulebound.tasks.politeness.reproduce import reproduction_rows

        return reproduction_rows(name, exp, model_source=model_source, root=root)


TASK = PolitenessTask()
