"""truthy (seed 003): ORPO on truthful-vs-false preference pairs, scored by held-out preference accuracy.

Data: always ingested from ``data.source`` (``hf:jondurbin/truthy-dpo-v0.1``, ``builtin:truthy_pairs``
or a file). One ORPO run. Evaluation: the held-out pairs scored from log-likelihoods on every artifact,
and a few held-out prompts answered by each variant (``rules/tasks/truthy.smk``) for the report.
"""

from __future__ import annotations

from rulebound.modelref import ModelRef
from rulebound.tasks.base import Task


class TruthyTask(Task):
    name = "truthy"
    seed = "003"
    summary = "prefer the truthful answer (about facts and about being an AI)"

    def ingests(self, exp: dict) -> bool:
        return True

    def ingest(self, data: dict):
        from rulebound.tasks.truthy.data import build_truthy_raw

        raw, report = build_truthy_raw(data["source"], invalid_rows=data["invalid_rows"],
                                       test_fraction=data["test_fraction"], seed=data["seed"],
                                       split=data.get("split", "train"))
        return raw.assign(prompt_id=raw["pair_id"]), report  # the id later stages select rows by

    def eval_set(self, name: str, exp: dict) -> str:
        return f"results/{name}/data/raw.parquet"  # its test split, before the chat template

    def evaluate(self, model: ModelRef, *, eval_set, variant, settings, threads=1):
        from rulebound.tasks.truthy.evaluate import evaluate_preferences

        return evaluate_preferences(model, eval_set, variant=variant, settings=settings, threads=threads)

    def summarize(self, eval_csvs):
        from rulebound.tasks.truthy.evaluate import summarize_preference_csvs

        return summarize_preference_csvs(eval_csvs)

    def conversations(self, eval_set, settings):
        from rulebound.io import read_table
        from rulebound.tasks.truthy.evaluate import held_out_chats, read_pairs

        pairs = read_pairs(eval_set, settings.get("max_pairs"))
        raw = read_table(eval_set, ["pair_id", "prompt", "split"], "conformance")
        return held_out_chats(raw[raw["pair_id"].isin(pairs["pair_id"])])[1]

    def report_files(self, name: str, exp: dict) -> dict[str, list[str]]:
        return {"examples": [f"results/{name}/eval/examples/{v}.csv" for v in exp["evaluate"]["variants"]]}

    def plot(self, *, metrics, summary, evals, curves_png, eval_png):
        from rulebound.report.figures import plot_training_curves
        from rulebound.tasks.truthy.report import SEED_READINGS, plot_preference_eval

        (metrics_csv,) = metrics.values()
        readings = plot_training_curves(metrics_csv, curves_png, seed_readings=SEED_READINGS,
                                        title="ORPO training (truthy)")
        plot_preference_eval(summary, list(evals.values()), eval_png)
        return readings

    def html_section(self, entry):
        from rulebound.tasks.truthy.report import html_section

        return html_section(entry)

    def reproduction_inputs(self, name, exp):
        from rulebound.tasks.truthy.reproduce import training_log

        return super().reproduction_inputs(name, exp) + [training_log(name)]

    def seed_comparison(self, exp, model_source):
        from rulebound.tasks.truthy.reproduce import comparison

        return comparison(exp, model_source)

    def reproduction_rows(self, name, exp, *, model_source, root):
        from rulebound.tasks.truthy.reproduce import reproduction_rows

        return reproduction_rows(name, exp, model_source=model_source, root=root)


TASK = TruthyTask()
