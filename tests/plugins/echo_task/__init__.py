"""echo: a task that lives outside rulebound, registered as a plug-in (tests/test_task_plugins.py).

The rule: repeat the word after "Repeat:" and nothing else. It shows what a task of one's own needs: this
module (``TASK``), its Snakemake rules (``rules.smk``: the data) and its schema fragment (``schema.yaml``),
with no edit to any stage of the pipeline.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rulebound.modelref import ModelRef
from rulebound.stats import wilson_interval
from rulebound.tasks.base import Task

HERE = Path(__file__).resolve().parent
WORDS = ["apple", "river", "cloud", "stone", "maple", "ember", "orbit", "tulip", "canyon", "lantern", "pebble", "harbor"]


def build_pairs(seed: int) -> pd.DataFrame:
    """Preference rows: chosen repeats the word, rejected talks about it; a quarter of the words held out."""
    rows = []
    for i, word in enumerate(WORDS):
        split = "test" if (i + seed) % 4 == 0 else "train"
        rows.append({"prompt_id": f"e{i:03d}", "request_id": i, "category": "echo", "split": split,
                     "prompt": f"Repeat: {word}", "chosen": word, "rejected": f"The word {word} is a noun."})
    return pd.DataFrame(rows)


def score(prompts: list[str], responses: list[str], variant: str) -> pd.DataFrame:
    words = [p.split(":", 1)[1].strip() for p in prompts]
    return pd.DataFrame({"variant": variant, "prompt": prompts, "response": responses,
                         "correct": [r.strip().strip(".").lower() == w for r, w in zip(responses, words)]})


class EchoTask(Task):
    name = "echo"
    summary = "repeat the word after 'Repeat:'"

    def rules_file(self) -> Path:
        return HERE / "rules.smk"

    def schema_file(self) -> Path:
        return HERE / "schema.yaml"

    def pairs(self, seed: int) -> pd.DataFrame:
        return build_pairs(seed)

    def eval_set(self, name: str, exp: dict) -> str:
        return f"results/{name}/data/test.parquet"

    def evaluate(self, model: ModelRef, *, eval_set, variant, settings, threads=1):
        prompts = pd.read_parquet(eval_set)["user"].tolist()
        replies = model.generate([[{"role": "user", "content": p}] for p in prompts],
                                 max_new_tokens=settings["max_new_tokens"], threads=threads)
        return score(prompts, replies, variant)

    def summarize(self, eval_csvs):
        rows = []
        for path in eval_csvs:
            df = pd.read_csv(path)
            k, n = int(df["correct"].sum()), len(df)
            low, high = wilson_interval(k, n)
            rows.append({"variant": df["variant"].iloc[0], "n": n, "rate": k / n, "ci_low": low, "ci_high": high})
        return pd.DataFrame(rows)

    def plot(self, *, metrics, summary, evals, curves_png, eval_png):
        from rulebound.report.figures import plot_training_curves, plt, save

        readings = plot_training_curves(next(iter(metrics.values())), curves_png, title="ORPO training (echo)")
        table = pd.read_csv(summary)
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.bar(table["variant"], table["rate"])
        ax.set(ylim=(0, 1), ylabel="words repeated")
        save(fig, eval_png)
        return readings


TASK = EchoTask()
