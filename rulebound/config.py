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


def check_semantics(config: dict) -> None:
    problems = []
    for name, model in config["models"].items():
        try:
            parse_source(model["source"])
        except ConfigError as exc:
            problems.append(f"models.{name}.source: {exc}")
    for name, exp in config["experiments"].items():
        if exp["model"] not in config["models"]:
            problems.append(
                f"experiments.{name}.model = {exp['model']!r} is not defined under models: "
                f"(defined: {', '.join(config['models'])})"
            )
        train = exp.get("train", {})
        if train.get("nll_scope") == "completion" and train.get("trainer") == "trl":
            problems.append(
                f"experiments.{name}.train.nll_scope = 'completion' needs trainer: fused "
                "(TRL's own ORPOTrainer always takes the NLL over prompt and answer: use nll_scope: full)"
            )
        quants = set(exp.get("export", {}).get("quants", []))
        for variant in exp.get("evaluate", {}).get("variants", []):
            if variant in GGUF_VARIANTS - {"F16"} and variant not in quants:
                problems.append(
                    f"experiments.{name}.evaluate.variants has {variant} but export.quants does not build it "
                    f"(export.quants: {', '.join(sorted(quants)) or 'none'})"
                )
    if problems:
        raise ConfigError("Invalid configuration:\n  " + "\n  ".join(problems))


def check_devices(config: dict) -> None:
    """Refuse GPU-only settings on a machine without CUDA (called for local runs only)."""
    from rulebound.train.backend import cuda_available

    if cuda_available():
        return
    for name, exp in config["experiments"].items():
        train = exp["train"]
        if train.get("backend") == "unsloth":
            raise ConfigError(
                f"experiments.{name}.train.backend is 'unsloth' but this machine has no CUDA GPU. "
                "Set it to 'auto' (transformers + PEFT on CPU) or run with a GPU profile "
                "(--profile profiles/slurm-a100 or profiles/local-gpu)."
            )
        if train.get("load_in_4bit"):
            raise ConfigError(
                f"experiments.{name}.train.load_in_4bit needs a CUDA GPU (bitsandbytes); "
                "set it to false here or run with a GPU profile."
            )
