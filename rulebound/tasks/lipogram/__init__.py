"""lipogram (seed 004): never write the letter "e" (``letter:``), the seed's ladder of methods.

Every method under ``methods:`` is a run of its own (``results/<experiment>/<method>/``): SFT on e-free
answers (the base model's answers under constrained decoding, distilled, plus shipped Q/A and optional hub
dialogues; ``rules/tasks/lipogram.smk``), and GRPO with the task's rewards, started from another method's
adapter (``init:``). Baselines need no training: ``base``, ``prompt`` (a system prompt forbidding the
letter) and ``constrained`` (decoding that bans every token holding it, on HF or, as ``constrained-F16``,
on the base GGUF through llama.cpp's grammar). ``<method>-<quant>`` variants evaluate a method's GGUFs.
"""

from __future__ import annotations

from rulebound.modelref import ModelRef
from rulebound.tasks import paths
from rulebound.tasks.base import Run, Task

BASELINES = ("base", "prompt", "constrained")


def method_of(run: str) -> str:
    """lipogram/sft -> sft: what figures and readings label a run by."""
    return run.split("/", 1)[-1]


class LipogramTask(Task):
    name = "lipogram"
    seed = "004"
    summary = 'never write the letter "e", from prompting to a GRPO curriculum'

    def runs(self, name: str, exp: dict) -> list[Run]:
        runs = []
        for method, cfg in exp["methods"].items():
            data = ({"train": f"results/{name}/data/sft.parquet"} if cfg["method"] == "sft"
                    else {"prompts": f"results/{name}/data/prompts.parquet"})
            runs.append(Run(name=f"{name}/{method}", experiment=name, method=cfg["method"], settings=cfg, data=data,
                            init=f"{name}/{cfg['init']}" if cfg.get("init") else None))
        return runs

    def exported_runs(self, name: str, exp: dict) -> list[str]:
        return [f"{name}/{method}" for method in exp["export"]["methods"]]

    def lora_gguf(self, exp: dict) -> bool:
        return False

    def release_run(self, name: str, exp: dict) -> str | None:
        return None

    def check_config(self, where: str, exp: dict) -> list[str]:
        """Method inits name methods (no cycles); variants name baselines, methods or exported GGUFs."""
        problems, methods = [], exp["methods"]
        for method, cfg in methods.items():
            seen, init = {method}, cfg.get("init")
            while init:
                if init not in methods:
                    problems.append(f"{where}.methods.{method}.init = {init!r} is not a method "
                                    f"(methods: {', '.join(methods)})")
                    break
                if init in seen:
                    problems.append(f"{where}.methods.{method}.init: methods start from each other in a cycle")
                    break
                seen.add(init)
                init = methods[init].get("init")
        export = exp["export"]
        for method in export["methods"]:
            if method not in methods:
                problems.append(f"{where}.export.methods has {method!r}, which is not a method")
        names = set(BASELINES) | set(methods)
        for variant in exp["evaluate"]["variants"]:
            name, _, quant = variant.partition("-")
            if not quant and name not in names:
                problems.append(f"{where}.evaluate.variants has {variant!r}: not one of {', '.join(sorted(names))}")
            elif quant and name == "constrained" and quant != "F16":
                problems.append(f"{where}.evaluate.variants has {variant!r}: constrained decoding on llama.cpp "
                                "runs on the base model's F16 GGUF only (constrained-F16)")
            elif quant and name != "constrained" and (name not in export["methods"]
                                                        or quant not in {"F16", *export["quants"]}):
                problems.append(f"{where}.evaluate.variants has {variant!r}, but export does not build that GGUF "
                                f"(export.methods: {export['methods']}, export.quants: {export['quants']})")
        return problems

    def eval_set(self, name: str, exp: dict) -> str:
        return f"results/{name}/data/eval_prompts.parquet"

    def eval_settings(self, exp: dict) -> dict:
        return {**super().eval_settings(exp), "letter": exp["letter"]}

    def variant_inputs(self, name: str, exp: dict, variant: str) -> dict:
        method, _, quant = variant.partition("-")
        run, model = f"{name}/{method}", exp["model"]
        inputs = {"eval_set": self.eval_set(name, exp)}
        if quant:
            inputs["gguf"] = paths.base_gguf(model) if method == "constrained" else paths.gguf_path(run, quant)
        else:
            inputs["model"] = paths.base_model_dir(model)
            if method in exp["methods"]:
                inputs["adapter"] = paths.adapter_dir(run)
        return inputs

    def evaluate(self, model: ModelRef, *, eval_set, variant, settings, threads=1):
        from rulebound.tasks.lipogram.evaluate import evaluate_lipogram

        return evaluate_lipogram(model, eval_set, variant=variant, settings=settings, letter=settings["letter"],
                                 threads=threads)

    def summarize(self, eval_csvs):
        from rulebound.tasks.lipogram.evaluate import summarize_lipogram_csvs

        return summarize_lipogram_csvs(eval_csvs)

    def conversations(self, eval_set, settings):
        from rulebound.tasks.lipogram.evaluate import conversations, read_prompts

        return conversations(read_prompts(eval_set, settings.get("max_prompts"))["prompt"].tolist(), "base")

    def extra_targets(self, name: str, exp: dict) -> list[str]:
        return [grammar_file(name, exp["letter"])]

    def plot(self, *, metrics, summary, evals, curves_png, eval_png):
        from rulebound.report.figures import plot_reward_curves
        from rulebound.tasks.lipogram.report import plot_lipogram_eval

        readings = plot_reward_curves({method_of(run): path for run, path in metrics.items()}, curves_png,
                                      title="Lipogram training: reward per GRPO method, SFT loss")
        plot_lipogram_eval(summary, eval_png)
        return readings

    def html_section(self, entry):
        from rulebound.tasks.lipogram.report import html_section

        metrics = {method_of(run): path for run, path in (entry.get("metrics") or {}).items()}
        return html_section({**entry, "metrics": metrics})

    def reproduction_inputs(self, name, exp):
        return [paths.summary_csv(name)]

    def quality_checks(self, name, exp, root):
        from rulebound.tasks.lipogram.quality import quality_checks

        return quality_checks(name, exp, root)

    def seed_comparison(self, exp, model_source):
        from rulebound.tasks.lipogram.reproduce import comparison

        return comparison(exp, model_source)

    def reproduction_rows(self, name, exp, *, model_source, root):
        from rulebound.tasks.lipogram.reproduce import reproduction_rows

        return reproduction_rows(name, exp, model_source=model_source, root=root)

    def rewards(self):
        from rulebound.tasks.lipogram.rewards import REWARDS

        return REWARDS


def grammar_file(name: str, letter: str) -> str:
    """llama.cpp's grammar for the constraint, next to the exported GGUFs."""
    return f"results/{name}/gguf/{name}-no-{letter}.gbnf"


TASK = LipogramTask()
