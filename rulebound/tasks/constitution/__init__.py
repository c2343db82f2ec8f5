"""constitution: rules written as data. One rule file gives the data, the training, a GRPO reward and a
per-rule evaluation.

The rules (``rules:`` in the experiment, or the YAML file ``rules_file`` names; ``spec``) label every prompt
the task generates (``data``: politeness's requests and wrappers, each rule's example requests, multi-turn
chats), the base model answers the requests itself, and each row becomes a preference pair: the deciding
rule's compliant answer over a non-compliant one, a normal answer over a wrong fixed line where no rule
applies. One ORPO run by default (``train.method: grpo`` with ``rewards: [constitution]`` trains on the
checkers instead). Evaluation: every artifact, base to Q4_K_M, on the held-out chats, per rule
(``evaluate``); the bar is in ``quality``.
"""

from __future__ import annotations

from rulebound.errors import ConfigError
from rulebound.modelref import ModelRef
from rulebound.tasks import paths
from rulebound.tasks.base import Run, Task


def _rules(exp: dict):
    from rulebound.tasks.constitution.spec import rules_of

    return rules_of(exp)


def rule_dicts(exp: dict) -> list[dict]:
    """The experiment's rules as plain data: rule params, so that editing a rule reruns what it feeds."""
    return [rule.as_dict() for rule in _rules(exp)]


def _with_rules(rewards: list, rules: list[dict]) -> list:
    """``constitution`` reward specs get the experiment's rules as their ``rules`` parameter."""
    out = []
    for spec in rewards:
        if spec == "constitution":
            spec = {"name": "constitution"}
        if isinstance(spec, dict) and spec.get("name") == "constitution":
            spec = {**spec, "rules": rules}
        out.append(spec)
    return out


class ConstitutionTask(Task):
    name = "constitution"
    summary = "follow a rule file: each rule's trigger, required behaviour and checker"

    def check_config(self, where, exp):
        from rulebound.tasks.constitution.spec import parse_rules, raw_rules

        problems = super().check_config(where, exp)
        try:
            label, raw = raw_rules(exp)
        except ConfigError as exc:
            return problems + [f"{where}: {exc}"]
        return problems + parse_rules(raw, f"{where}.{label}")[1]

    def runs(self, name, exp):
        train = exp["train"]  # the config's own mapping: the config check resolves nll_scope in it
        if train["method"] == "grpo":
            train = {**train, "rewards": _with_rules(train["rewards"], rule_dicts(exp))}
            return [Run(name=name, experiment=name, method="grpo", settings=train,
                        data={"prompts": f"results/{name}/data/grpo_prompts.parquet"})]
        return [Run(name=name, experiment=name, method=train["method"], settings=train,
                    data={"train": paths.train_parquet(name)})]

    def formats_preferences(self, name, exp):
        return True  # the held-out split is the evaluation set, whatever the run trains on

    def formatting_limits(self, exp):
        train = exp["train"]
        return {"max_length": train.get("max_length"), "max_prompt_length": train.get("max_prompt_length"),
                "overlong": train.get("overlong", "drop")}

    def eval_set(self, name, exp):
        return f"results/{name}/data/test.parquet"

    def eval_settings(self, exp):
        return {**super().eval_settings(exp), "rules": rule_dicts(exp)}

    def evaluate(self, model: ModelRef, *, eval_set, variant, settings, threads=1):
        from rulebound.tasks.constitution.evaluate import evaluate
        from rulebound.tasks.constitution.spec import parse_rules

        rules, problems = parse_rules(settings["rules"])
        if problems:
            raise ConfigError("; ".join(problems))
        return evaluate(rules, model, eval_set, variant=variant, max_new_tokens=settings["max_new_tokens"],
                        batch_size=settings["batch_size"], n_ctx=settings["n_ctx"],
                        max_prompts=settings.get("max_prompts"), threads=threads)

    def summarize(self, eval_csvs):
        from rulebound.tasks.constitution.evaluate import summarize

        return summarize(eval_csvs)

    def conversations(self, eval_set, settings):
        from rulebound.tasks.constitution.evaluate import chats, read_eval_set

        return chats(read_eval_set(eval_set, settings.get("max_prompts")))

    def report_files(self, name, exp):
        return {"rules": [f"results/{name}/data/rules.json"]}

    def plot(self, *, metrics, summary, evals, curves_png, eval_png):
        from rulebound.report.figures import plot_reward_curves, plot_training_curves
        from rulebound.tasks.constitution.report import plot_groups

        import pandas as pd

        (metrics_csv,) = metrics.values()
        if any(c.startswith("reward") for c in pd.read_csv(metrics_csv, nrows=0).columns):
            readings = plot_reward_curves(metrics, curves_png, title="GRPO training (constitution)")
        else:
            readings = plot_training_curves(metrics_csv, curves_png, title="ORPO training (constitution)")
        plot_groups(summary, eval_png)
        return readings

    def html_section(self, entry):
        from rulebound.tasks.constitution.report import html_section

        return html_section(entry)

    def quality_checks(self, name, exp, root):
        from rulebound.tasks.constitution.quality import quality_checks

        return quality_checks(name, exp, root)

    def rewards(self):
        from rulebound.tasks.constitution.rewards import REWARDS

        return REWARDS


TASK = ConstitutionTask()
