"""One entry point per pipeline stage that differs by task, so the rules and scripts stay generic.

A task is what an experiment teaches and how it is scored:
- ``politeness``: answer only when asked with please; scored on the held-out split plus the edge-case suite.
- ``truthy``: prefer the truthful answer; scored by held-out preference accuracy from log-likelihoods.
- ``lipogram``: never write a letter; scored by lipogram metrics and relevance of the answers.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from rulebound.errors import ConfigError
from rulebound.io import write_csv

log = logging.getLogger(__name__)

TASKS = ("politeness", "truthy", "lipogram")


def _check(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; tasks are {', '.join(TASKS)}")


def evaluate_variant(task: str, *, inputs: dict, out_csv: str | os.PathLike, variant: str, settings: dict,
                     letter: str | None = None, threads: int = 1) -> pd.DataFrame:
    """Evaluate one variant: ``inputs`` holds eval_set and either model (+ adapter) or gguf (+ lora)."""
    _check(task)
    model = {k: inputs.get(k) for k in ("model", "adapter", "gguf", "lora")}
    if task == "politeness":
        from rulebound import evaluate

        common = dict(variant=variant, max_new_tokens=settings["max_new_tokens"],
                      max_prompts=settings.get("max_prompts"), threads=threads)
        if model["gguf"]:
            return evaluate.evaluate_gguf(inputs["eval_set"], model["gguf"], out_csv, n_ctx=settings["n_ctx"],
                                          lora_path=model["lora"], **common)
        return evaluate.evaluate_hf(inputs["eval_set"], model["model"], out_csv, adapter_dir=model["adapter"],
                                    batch_size=settings["batch_size"], **common)
    if task == "truthy":
        from rulebound.truthy import evaluate_preferences

        scored = evaluate_preferences(inputs["eval_set"], variant=variant, settings=settings, threads=threads,
                                      **model)
    else:
        from rulebound.lipogram_eval import evaluate_lipogram

        scored = evaluate_lipogram(inputs["eval_set"], variant=variant, settings=settings, letter=letter,
                                   threads=threads, **model)
    write_csv(scored, out_csv)
    return scored


def summarize(task: str, eval_csvs: list, out_csv: str | os.PathLike) -> pd.DataFrame:
    """The experiment's summary table: per variant (and category), the task's headline figures."""
    _check(task)
    if task == "politeness":
        from rulebound.evaluate import summarize as summarize_politeness

        summary = summarize_politeness(eval_csvs)
    elif task == "truthy":
        from rulebound.truthy import summarize_preference_csvs

        summary = summarize_preference_csvs(eval_csvs)
    else:
        from rulebound.lipogram_eval import summarize_lipogram_csvs

        summary = summarize_lipogram_csvs(eval_csvs)
    write_csv(summary, out_csv)
    return summary


def plot(task: str, *, metrics_csvs: list, summary_csv, curves_png, eval_png, eval_csvs: list = ()) -> list[str]:
    """The experiment's training figure and evaluation figure; returns one reading per training panel drawn.

    ``eval_csvs`` (the variants' eval CSVs) give the truthy figure its margin distributions.
    """
    _check(task)
    from rulebound import report

    if task == "lipogram":
        readings = report.plot_reward_curves(metrics_csvs, curves_png)
        report.plot_lipogram_eval(summary_csv, eval_png)
        return readings
    readings = report.plot_training_curves(metrics_csvs[0], curves_png, task=task)
    if task == "truthy":
        report.plot_preference_eval(summary_csv, list(eval_csvs), eval_png)
    else:
        report.plot_eval_heatmap(summary_csv, eval_png)
    return readings


def ingest_raw(task: str, data: dict) -> tuple[pd.DataFrame, dict]:
    """Raw preference rows with a train/test ``split`` column from the experiment's ``data.source``."""
    _check(task)
    if task == "truthy":
        from rulebound.truthy import build_truthy_raw

        raw, report = build_truthy_raw(data["source"], invalid_rows=data["invalid_rows"],
                                       test_fraction=data["test_fraction"], seed=data["seed"],
                                       split=data.get("split", "train"))
        return raw.assign(prompt_id=raw["pair_id"]), report  # the id later stages select rows by
    if task != "politeness":
        raise ConfigError(f"data.source ingestion is for preference experiments, not {task!r}")
    from rulebound.ingest import load_preference_source, split_holdout
    from rulebound.politeness import label_ingested

    df, report = load_preference_source(data["source"], invalid_rows=data["invalid_rows"],
                                        split=data.get("split", "train"))
    df = label_ingested(df, data["policy"])
    train, test = split_holdout(df, data["test_fraction"], data["seed"])
    return pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True), report


def answer_examples(*, inputs: dict, out_csv: str | os.PathLike, variant: str, settings: dict,
                    threads: int = 1) -> pd.DataFrame:
    """A handful of held-out truthy prompts answered by one variant, for the report's example table."""
    from rulebound.generate import gguf_generate, hf_generate
    from rulebound.io import read_table

    raw = read_table(inputs["eval_set"], ["prompt", "split"], "answer examples")
    rows = raw[raw["split"] == "test"].head(settings["examples"]).reset_index(drop=True)
    from rulebound.formatting import messages_for

    systems = rows["system"] if "system" in rows.columns else [None] * len(rows)
    chats = [messages_for(p, s) for s, p in zip(systems, rows["prompt"])]  # as the pairs were trained
    if inputs.get("gguf"):
        answers = gguf_generate(inputs["gguf"], chats, max_new_tokens=settings["max_new_tokens"],
                                n_ctx=settings["n_ctx"], threads=threads, lora_path=inputs.get("lora"))
    else:
        answers = hf_generate(inputs["model"], chats, adapter_dir=inputs.get("adapter"),
                              max_new_tokens=settings["max_new_tokens"], batch_size=settings["batch_size"],
                              threads=threads)
    out = pd.DataFrame({"variant": variant, "prompt": rows["prompt"], "response": answers,
                        "chosen": rows["chosen"], "rejected": rows["rejected"]})
    write_csv(out, out_csv)
    return out
