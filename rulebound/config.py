"""Configuration checks that run before any job: the JSON schema (with defaults) plus cross-field rules.

Every error names the key, the value and what is allowed, so a typo costs one read, not one run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rulebound.errors import ConfigError
from rulebound.export.gguf import QUANT_TYPES
from rulebound.models import parse_source

GGUF_VARIANTS = set(QUANT_TYPES)


def _validator(schema: dict):
    from jsonschema import Draft7Validator, validators

    def set_defaults(validator, properties, instance, schema):
        for name, sub in properties.items():
            if isinstance(instance, dict) and "default" in sub and name not in instance:
                instance[name] = yaml.safe_load(yaml.safe_dump(sub["default"]))  # a fresh copy
        yield from Draft7Validator.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = validators.extend(Draft7Validator, {"properties": set_defaults})
    return cls(schema)


def _where(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error) -> str:
    key = _where(error)
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config key {key} = {error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"config key {key}: {error.message}; known keys here: {allowed}"
    if error.validator == "required":
        return f"config key {key}: {error.message}"
    hint = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"config key {key} = {error.instance!r}: {error.message}" + (f" ({hint})" if hint else "")


def canonical(obj):
    """The same mapping with keys sorted at every level.

    Snakemake compares rule params with their last run's as text, so key order alone (a reordered
    config file, a --configfile overlay) would look like a change and rerun everything downstream.
    """
    if isinstance(obj, dict):
        return {key: canonical(obj[key]) for key in sorted(obj)}
    if isinstance(obj, list):
        return [canonical(item) for item in obj]
    return obj


def load_schema(schema_path: str | Path) -> dict:
    """The base schema with every registered task's fragment: ``experiments.<name>`` is one of the tasks' shapes,
    picked by its ``task:`` key. A fragment's own ``definitions`` join the base ones (names must not clash)."""
    from rulebound.tasks import registry

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    definitions = schema.setdefault("definitions", {})
    names = registry.names()
    branches = []
    for name in names:
        path = registry.get(name).schema_file()
        if not Path(path).is_file():
            raise ConfigError(f"Task {name!r} has no schema fragment at {path}; a task ships one (see README, Layout).")
        fragment = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for key, value in (fragment.pop("definitions", None) or {}).items():
            if key in definitions:
                raise ConfigError(f"{path} defines {key!r}, which the base schema or another task defines already.")
            definitions[key] = value
        definitions[f"task_{name}"] = fragment
        branches.append({"if": {"properties": {"task": {"const": name}}}, "then": {"$ref": f"#/definitions/task_{name}"}})
    definitions["experiment"] = {
        "type": "object",
        "required": ["task", "model"],
        "properties": {"task": {"enum": names, "description": "what the experiment teaches (a registered task)"}},
        "allOf": branches,
    }
    return schema


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place (defaults filled in) and return it; raise ConfigError listing problems.

    Plug-in tasks named under ``task_plugins`` are loaded first, so that their experiments validate too.
    """
    from rulebound.tasks import registry

    registry.load_plugins(list(config.get("task_plugins") or []))
    validator = _validator(load_schema(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    check_semantics(config)
    return config


RESERVED_NAMES = {"all", "publish", "reproduce"}  # rule names: an experiment is also a target rule


def check_semantics(config: dict) -> None:
    """What the schema cannot check: model sources, references between keys, every task's own checks, rewards."""
    from rulebound.tasks import registry

    problems = []
    for name, model in config["models"].items():
        try:
            parse_source(model["source"])
        except ConfigError as exc:
            problems.append(f"models.{name}.source: {exc}")
    for name, exp in config["experiments"].items():
        where = f"experiments.{name}"
        if name in RESERVED_NAMES:
            problems.append(f"{where}: the name {name!r} is a rule of the pipeline; rename the experiment")
        if exp["model"] not in config["models"]:
            problems.append(
                f"{where}.model = {exp['model']!r} is not defined under models: "
                f"(defined: {', '.join(config['models'])})"
            )
        task = registry.get(exp["task"])
        problems += task.check_config(where, exp)
        for run in task.runs(name, exp):
            section = _section_of(where, name, run.name)
            if run.method == "orpo":
                problems += _orpo_problems(section, run.settings)
            elif run.method == "grpo":
                problems += _reward_problems(f"{section}.rewards", run.settings["rewards"])
    if problems:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems))


def _section_of(where: str, experiment: str, run: str) -> str:
    """Where a run's settings live in the config: the experiment's train: or methods.<method>."""
    return f"{where}.train" if run == experiment else f"{where}.methods.{run.split('/', 1)[1]}"


def resolve_nll_scope(train: dict) -> None:
    """``nll_scope: auto`` in place: the ORPO paper's completion-only NLL with the fused trainer, TRL's full
    prompt+answer NLL with ``trainer: trl``, so switching trainers is one key."""
    if train.get("nll_scope") == "auto":
        train["nll_scope"] = "completion" if train.get("trainer", "fused") == "fused" else "full"


def _orpo_problems(where: str, train: dict) -> list[str]:
    resolve_nll_scope(train)
    if train.get("nll_scope") == "completion" and train.get("trainer") == "trl":
        return [f"{where}.nll_scope = 'completion' needs trainer: fused "
                "(TRL's own ORPOTrainer always takes the NLL over prompt and answer: use nll_scope: full)"]
    return []


def _reward_problems(where: str, specs: list) -> list[str]:
    """Reward names resolve and their parameters hold (a curriculum ramp > 0) before any job starts."""
    from rulebound.rewards import resolve_rewards

    if not specs:
        return [f"{where} is empty; GRPO needs at least one reward (e.g. [no_e])"]
    try:
        resolve_rewards(specs)
    except ConfigError as exc:
        return [f"{where}: {exc}"]
    return []


def training_sections(name: str, exp: dict) -> list[tuple[str, dict]]:
    """(where, settings) of every training run of an experiment."""
    from rulebound.tasks import registry

    return [(_section_of(f"experiments.{name}", name, run.name), run.settings)
            for run in registry.get(exp["task"]).runs(name, exp)]


def check_devices(config: dict) -> None:
    """Refuse GPU-only settings on a machine without CUDA (called for local runs only)."""
    from rulebound.train.backend import cuda_available

    if cuda_available():
        return
    for name, exp in config["experiments"].items():
        for where, train in training_sections(name, exp):
            _check_train_devices(where, train)


def _check_train_devices(where: str, train: dict) -> None:
    if train.get("backend") == "unsloth":
        raise ConfigError(
            f"{where}.backend is 'unsloth' but this machine has no CUDA GPU. "
            "Set it to 'auto' (transformers + PEFT on CPU) or run with a GPU profile "
            "(--profile profiles/slurm-a100 or profiles/local-gpu)."
        )
    if train.get("load_in_4bit"):
        raise ConfigError(
            f"{where}.load_in_4bit needs a CUDA GPU (bitsandbytes); "
            "set it to false here or run with a GPU profile."
        )
