"""Configuration checks that run before any job: the JSON schema (with defaults) plus cross-field rules.

Every error names the key, the value and what is allowed, so a typo costs one read, not one run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rulebound.errors import ConfigError
from rulebound.gguf import QUANT_TYPES
from rulebound.models import parse_source

GGUF_VARIANTS = set(QUANT_TYPES)
HF_VARIANTS = {"base", "adapter", "merged"}


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
    return f"config key {key} = {error.instance!r}: {error.message}"


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


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate ``config`` in place (defaults filled in) and return it; raise ConfigError listing problems."""
    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    check_semantics(config)
    return config


RESERVED_NAMES = {"all", "publish", "reproduce"}  # rule names: an experiment is also a target rule
LIPOGRAM_BASELINES = {"base", "prompt", "constrained"}


def check_semantics(config: dict) -> None:
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
        if exp["task"] == "lipogram":
            problems += _lipogram_problems(where, exp)
        else:
            problems += _preference_problems(where, exp)
    if problems:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems))


def resolve_nll_scope(train: dict) -> None:
    """``nll_scope: auto`` in place: the ORPO paper's completion-only NLL with the fused trainer, TRL's full
    prompt+answer NLL with ``trainer: trl``, so switching trainers is one key."""
    if train.get("nll_scope") == "auto":
        train["nll_scope"] = "completion" if train.get("trainer", "fused") == "fused" else "full"


def _preference_problems(where: str, exp: dict) -> list[str]:
    problems = []
    train = exp.get("train", {})
    resolve_nll_scope(train)
    if train.get("nll_scope") == "completion" and train.get("trainer") == "trl":
        problems.append(
            f"{where}.train.nll_scope = 'completion' needs trainer: fused "
            "(TRL's own ORPOTrainer always takes the NLL over prompt and answer: use nll_scope: full)"
        )
    quants = set(exp.get("export", {}).get("quants", []))
    for variant in exp.get("evaluate", {}).get("variants", []):
        if variant in GGUF_VARIANTS - {"F16"} and variant not in quants:
            problems.append(
                f"{where}.evaluate.variants has {variant} but export.quants does not build it "
                f"(export.quants: {', '.join(sorted(quants)) or 'none'})"
            )
    return problems


def _lipogram_problems(where: str, exp: dict) -> list[str]:
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
        if cfg["method"] == "grpo":
            problems += _reward_problems(f"{where}.methods.{method}.rewards", cfg["rewards"])
    export = exp["export"]
    for method in export["methods"]:
        if method not in methods:
            problems.append(f"{where}.export.methods has {method!r}, which is not a method")
    for variant in exp["evaluate"]["variants"]:
        name, _, quant = variant.partition("-")
        if not quant and name not in LIPOGRAM_BASELINES | set(methods):
            problems.append(f"{where}.evaluate.variants has {variant!r}: not one of "
                            f"{', '.join(sorted(LIPOGRAM_BASELINES | set(methods)))}")
        elif quant and name == "constrained" and quant != "F16":
            problems.append(f"{where}.evaluate.variants has {variant!r}: constrained decoding on llama.cpp "
                            "runs on the base model's F16 GGUF only (constrained-F16)")
        elif quant and name != "constrained" and (name not in export["methods"]
                                                    or quant not in {"F16", *export["quants"]}):
            problems.append(f"{where}.evaluate.variants has {variant!r}, but export does not build that GGUF "
                            f"(export.methods: {export['methods']}, export.quants: {export['quants']})")
    return problems


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


def training_sections(exp: dict) -> list[tuple[str, dict]]:
    """(where, settings) of every training run of an experiment: its train: or each lipogram method."""
    if exp.get("task") == "lipogram":
        return [(f"methods.{m}", cfg) for m, cfg in exp["methods"].items()]
    return [("train", exp["train"])]


def check_devices(config: dict) -> None:
    """Refuse GPU-only settings on a machine without CUDA (called for local runs only)."""
    from rulebound.train.backend import cuda_available

    if cuda_available():
        return
    for name, exp in config["experiments"].items():
        for section, train in training_sections(exp):
            _check_train_devices(f"experiments.{name}.{section}", train)


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
