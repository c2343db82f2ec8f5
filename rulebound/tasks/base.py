"""The Task interface: everything the generic stages ask of a task, with defaults for the common shape.

A task is what an experiment teaches and how it is scored (politeness, truthy, lipogram, constitution, or
a plug-in). The stages (data formatting, training, export, evaluation, report, reproduction) never name a
task: they call these hooks on ``registry.get(experiment["task"])``. A task also owns two files, its own
Snakemake rules (``rules/tasks/<name>.smk``: the rules that make its data) and its JSON-schema fragment
(``schemas/tasks/<name>.yaml``: the shape of its experiments in the config).

The defaults describe the most common task, one ORPO run on formatted preference pairs: the experiment's
``train:`` section trains ``results/<experiment>/adapter`` from ``results/<experiment>/data/train.parquet``,
every artifact (base, adapter, merged, F16, LoRA GGUF, quants) can be evaluated, and the run is released
(Modelfiles, quant fidelity, a hub folder). A task overrides what differs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from rulebound.errors import RuleboundError
from rulebound.modelref import ModelRef
from rulebound.tasks import paths

REPO = Path(__file__).resolve().parents[2]
HF_ARTIFACTS = ("base", "adapter", "merged")


@dataclass(frozen=True)
class Run:
    """One training run: its adapter is ``results/<name>/adapter``, its GGUFs ``results/<name>/gguf/<stem>-*``."""

    name: str  # the experiment's name, or <experiment>/<method> for a task with several runs
    experiment: str
    method: str  # orpo | sft | grpo: the training rule that trains it
    settings: dict = field(hash=False)  # the run's training section, schema defaults filled in
    data: dict = field(hash=False)  # the training rule's data inputs by name: {"train": ...} or {"prompts": ...}
    init: str | None = None  # the run whose adapter this one starts from

    @property
    def stem(self) -> str:
        """The name its files carry: lipogram/sft -> lipogram-sft."""
        return self.name.replace("/", "-")


class Task:
    """Subclass, set ``name`` (and ``seed`` for a task that reproduces a published experiment), override hooks."""

    name: str = ""
    seed: str | None = None  # the published seed it reproduces ("000"), if any
    summary: str = ""  # one line for README's task table and the report's heading

    # --- the task's own files ---------------------------------------------------------------------

    def rules_file(self) -> Path | None:
        """Its Snakemake rules (data generation and the like), included by the Snakefile; None if it has none."""
        path = REPO / "rules" / "tasks" / f"{self.name}.smk"
        return path if path.is_file() else None

    def schema_file(self) -> Path:
        """Its JSON-schema fragment: the shape of one experiment of this task (``$ref``s into the base schema)."""
        return REPO / "schemas" / "tasks" / f"{self.name}.yaml"

    # --- configuration ----------------------------------------------------------------------------

    def check_config(self, where: str, exp: dict) -> list[str]:
        """Problems the schema cannot see, as ``"<where>.<key>: what is wrong"`` lines (run before any job)."""
        quants = set(exp.get("export", {}).get("quants", []))
        problems = []
        for variant in exp.get("evaluate", {}).get("variants", []):
            if paths.is_quant(variant) and variant not in quants:
                problems.append(f"{where}.evaluate.variants has {variant} but export.quants does not build it "
                                f"(export.quants: {', '.join(sorted(quants)) or 'none'})")
        return problems

    # --- training runs ----------------------------------------------------------------------------

    def runs(self, name: str, exp: dict) -> list[Run]:
        """Every training run of the experiment (run name -> method, settings, data)."""
        train = exp["train"]
        return [Run(name=name, experiment=name, method=train["method"], settings=train,
                    data={"train": paths.train_parquet(name)})]

    def exported_runs(self, name: str, exp: dict) -> list[str]:
        """The runs merged and exported to GGUF."""
        return [run.name for run in self.runs(name, exp)]

    def lora_gguf(self, exp: dict) -> bool:
        """Whether exported runs also get a LoRA GGUF (``<stem>-lora-F16.gguf``)."""
        return True

    def release_run(self, name: str, exp: dict) -> str | None:
        """The run that gets a quant-fidelity table and a hub folder (``results/<experiment>/publish``)."""
        runs = self.runs(name, exp)
        return runs[0].name if len(runs) == 1 else None

    # --- data ----------------------------------------------------------------------------------------

    def ingests(self, exp: dict) -> bool:
        """Whether ``results/<experiment>/data/raw.parquet`` comes from ``data.source`` (rule ingest_pairs)."""
        return bool(exp.get("data", {}).get("source"))

    def ingest(self, data: dict) -> tuple[pd.DataFrame, dict]:
        """The raw preference table (with a train/test ``split`` column) and a report, from ``data.source``."""
        raise RuleboundError(f"The {self.name} task does not ingest data.source; remove it from the config.")

    def formats_preferences(self, name: str, exp: dict) -> bool:
        """Whether format_data turns ``raw.parquet`` into chat-templated ``train``/``test`` parquets."""
        return any(run.data.get("train") == paths.train_parquet(name) for run in self.runs(name, exp))

    def formatting_limits(self, exp: dict) -> dict:
        """Length limits of format_data (rows over them are dropped or truncated, and counted)."""
        return {k: exp["train"][k] for k in ("max_length", "max_prompt_length", "overlong")}

    # --- evaluation ----------------------------------------------------------------------------------

    def eval_set(self, name: str, exp: dict) -> str:
        """The held-out file every variant is evaluated on."""
        raise NotImplementedError(f"task {self.name} defines no evaluation set")

    def eval_settings(self, exp: dict) -> dict:
        """What ``evaluate`` gets as settings: the evaluate section without its variant list, so that adding a
        variant reruns nothing else."""
        return {k: v for k, v in exp["evaluate"].items() if k != "variants"}

    def eval_threads(self, exp: dict) -> int:
        """Threads of an HF evaluation job (profiles' set-threads override this)."""
        return 1

    def variant_inputs(self, name: str, exp: dict, variant: str) -> dict:
        """The named inputs of one variant (``model``/``adapter`` or ``gguf``/``lora``, see ``ModelRef``), plus
        ``eval_set``. Default: base, adapter, merged, F16, lora-F16 and quants of the experiment's one run."""
        (run,) = self.runs(name, exp)
        model = exp["model"]
        inputs = {"eval_set": self.eval_set(name, exp)}
        if variant == "merged":
            inputs["model"] = paths.merged_dir(run.name)
        elif variant in ("base", "adapter"):
            inputs["model"] = paths.base_model_dir(model)
            if variant == "adapter":
                inputs["adapter"] = paths.adapter_dir(run.name)
        elif variant == "lora-F16":
            inputs.update(gguf=paths.base_gguf(model), lora=paths.gguf_path(run, "lora-F16"))
        else:
            inputs["gguf"] = paths.gguf_path(run, variant)
        return inputs

    def evaluate(self, model: ModelRef, *, eval_set: str, variant: str, settings: dict,
                 threads: int = 1) -> pd.DataFrame:
        """One variant's evaluation rows (written to ``results/<experiment>/eval/<variant>.csv``)."""
        raise NotImplementedError(f"task {self.name} defines no evaluation")

    def summarize(self, eval_csvs: list[str]) -> pd.DataFrame:
        """The experiment's summary table over its variants' eval CSVs (``eval/summary.csv``)."""
        raise NotImplementedError(f"task {self.name} defines no summary")

    def conversations(self, eval_set: str, settings: dict) -> list[list[dict]]:
        """The chats of the evaluation set, as the model sees them (GGUF conformance renders them)."""
        raise NotImplementedError(f"task {self.name} does not list its evaluation chats")

    # --- report ----------------------------------------------------------------------------------------

    def report_files(self, name: str, exp: dict) -> dict[str, list[str]]:
        """Files beyond summary, eval CSVs, metrics and figures that the report shows, by role."""
        return {}

    def extra_targets(self, name: str, exp: dict) -> list[str]:
        """Files `snakemake <experiment>` builds besides GGUFs, evaluation, figures and release files."""
        return []

    def plot(self, *, metrics: dict[str, str], summary: str, evals: dict[str, str], curves_png: str,
             eval_png: str) -> list[str]:
        """Draw the training figure and the evaluation figure; return one reading line per training panel."""
        raise NotImplementedError(f"task {self.name} draws no figures")

    def html_section(self, entry: dict) -> list[str]:
        """HTML parts of the experiment's section of ``results/report.html``; ``entry`` holds its files by role
        (``summary``, ``metrics`` {run: csv}, ``evals`` {variant: csv}, ``figures`` {name: png}, and
        ``report_files``' roles)."""
        from rulebound.report import html

        return html.generic_section(entry)

    # --- reproduction ------------------------------------------------------------------------------------

    def reproduction_inputs(self, name: str, exp: dict) -> list[str]:
        """Every file ``reproduction_rows`` reads."""
        return [paths.summary_csv(name)] + [paths.metrics_csv(run.name) for run in self.runs(name, exp)]

    def seed_comparison(self, exp: dict, model_source: str) -> tuple[str, str] | None:
        """("yes" or "no: why", our setting in one line) against the seed's published run; None without a seed."""
        return None

    def reproduction_rows(self, name: str, exp: dict, *, model_source: str, root: str | os.PathLike) -> list[dict]:
        """Rows of ``results/reproduction.md``: ``figure``, ``published``, ``ours``, ``comparable``, ``setting``
        (and ``seed``); [] for a task that reproduces no published experiment."""
        return []

    # --- quality bars -------------------------------------------------------------------------------------

    def quality_checks(self, name: str, exp: dict, root: Path) -> list:
        """``rulebound.quality.Check``s of what the trained model must do, read off a finished run's files."""
        return []

    # --- training rewards -----------------------------------------------------------------------------------

    def rewards(self) -> dict[str, Callable[..., list[float]]]:
        """GRPO rewards this task contributes, by the name a config uses (see ``rulebound.rewards``)."""
        return {}

    def __repr__(self) -> str:
        return f"<task {self.name}>"
