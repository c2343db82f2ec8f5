"""Config validation: schema errors name the key and the allowed values; cross-field checks."""

import copy
from pathlib import Path

import pytest
import yaml

from rulebound.config import check_devices, validate_config
from rulebound.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid_and_gets_defaults(config):
    validated = validate_config(copy.deepcopy(config), SCHEMA)
    train = validated["experiments"]["politeness"]["train"]
    assert train["overlong"] == "drop"  # filled from the schema
    assert train["lora"]["r"] == 16


def test_enum_error_names_key_and_allowed_values(config):
    config["experiments"]["politeness"]["train"]["backend"] = "tensorflow"
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    msg = str(err.value)
    assert "experiments.politeness.train.backend" in msg
    assert "'tensorflow'" in msg and "auto, unsloth, transformers" in msg


def test_unknown_quant_type_is_refused(config):
    config["experiments"]["politeness"]["export"]["quants"] = ["Q8_0", "Q3_XYZ"]
    with pytest.raises(ConfigError, match=r"export\.quants\.1 = 'Q3_XYZ' is not allowed; allowed values: Q8_0"):
        validate_config(config, SCHEMA)


def test_unknown_key_lists_known_keys(config):
    config["experiments"]["politeness"]["train"]["learning_rat"] = 1e-4
    with pytest.raises(ConfigError, match="learning_rat.*known keys here:.*learning_rate"):
        validate_config(config, SCHEMA)


def test_unknown_model_source(config):
    config["models"]["smollm2-135m-instruct"]["source"] = "s3:bucket/model"
    with pytest.raises(ConfigError, match="Unknown model source 's3:bucket/model'"):
        validate_config(config, SCHEMA)


def test_undefined_model_reference(config):
    config["experiments"]["politeness"]["model"] = "llama-9000"
    with pytest.raises(ConfigError, match="'llama-9000' is not defined under models"):
        validate_config(config, SCHEMA)


def test_eval_variant_needs_its_quant(config):
    config["experiments"]["politeness"]["export"]["quants"] = ["Q8_0"]
    with pytest.raises(ConfigError, match="Q4_K_M but export.quants does not build it"):
        validate_config(config, SCHEMA)


def test_unsloth_without_cuda_is_refused(config, monkeypatch):
    monkeypatch.setattr("rulebound.train.backend.cuda_available", lambda: False)
    config["experiments"]["politeness"]["train"]["backend"] = "unsloth"
    validate_config(config, SCHEMA)
    with pytest.raises(ConfigError, match="'unsloth' but this machine has no CUDA GPU"):
        check_devices(config)


def test_completion_nll_needs_the_fused_trainer(config):
    config["experiments"]["politeness"]["train"].update(trainer="trl", nll_scope="completion")
    with pytest.raises(ConfigError, match="nll_scope = 'completion' needs trainer: fused"):
        validate_config(config, SCHEMA)


def test_switching_to_trls_trainer_is_one_key(config):
    """nll_scope: auto follows the trainer, so `trainer: trl` alone is TRL's plain ORPO (full-sequence NLL)."""
    import copy

    fused = validate_config(copy.deepcopy(config), SCHEMA)["experiments"]["politeness"]["train"]
    assert (fused["trainer"], fused["nll_scope"]) == ("fused", "completion")
    config["experiments"]["politeness"]["train"]["trainer"] = "trl"
    trl = validate_config(config, SCHEMA)["experiments"]["politeness"]["train"]
    assert (trl["trainer"], trl["nll_scope"]) == ("trl", "full")


def test_canonical_sorts_keys_at_every_level():
    from rulebound.config import canonical

    value = {"b": {"y": 1, "x": [{"d": 1, "c": 2}]}, "a": 0}
    out = canonical(value)
    assert list(out) == ["a", "b"] and list(out["b"]) == ["x", "y"] and list(out["b"]["x"][0]) == ["c", "d"]
    assert out == value


def _lipogram_config(**method_changes) -> dict:
    import copy

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["experiments"]["lipogram"]["methods"]["grpo_curriculum"].update(method_changes)
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"rewards": ["no_such_reward"]}, "no_such_reward"),
        ({"rewards": [{"name": "length_curriculum", "ramp": 0}]}, "ramp"),
        ({"rewards": [{"name": "length_curriculum", "ramp": -5}]}, "ramp"),
        ({"rewards": ["nowhere.module:fn"]}, "nowhere.module"),
        ({"rewards": []}, "at least one reward"),
        ({"init": "missing"}, "init = 'missing' is not a method"),
    ],
)
def test_lipogram_bad_methods_stop_before_any_job(changes, message):
    with pytest.raises(ConfigError) as err:
        validate_config(_lipogram_config(**changes), SCHEMA)
    assert message in str(err.value) and "grpo_curriculum" in str(err.value)


def test_lipogram_init_cycle_and_unbuilt_gguf_variant_are_refused():
    config = _lipogram_config(init="grpo")
    config["experiments"]["lipogram"]["methods"]["grpo"]["init"] = "grpo_curriculum"
    config["experiments"]["lipogram"]["export"]["methods"] = ["grpo_curriculum"]
    config["experiments"]["lipogram"]["evaluate"]["variants"].append("sft-Q4_K_M")
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert "cycle" in str(err.value) and "'sft-Q4_K_M', but export does not build that GGUF" in str(err.value)


def test_experiment_needs_a_known_task_and_tasks_get_their_defaults():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    missing = copy.deepcopy(config)
    del missing["experiments"]["politeness"]["task"]
    with pytest.raises(ConfigError, match=r"experiments\.politeness: 'task' is a required property"):
        validate_config(missing, SCHEMA)
    unknown = copy.deepcopy(config)
    unknown["experiments"]["politeness"]["task"] = "poetry"
    with pytest.raises(ConfigError, match=r"task = 'poetry' is not allowed; allowed values: (constitution, )?(echo, )?lipogram, politeness"):
        validate_config(unknown, SCHEMA)
    validate_config(config, SCHEMA)
    assert config["experiments"]["truthy"]["data"]["invalid_rows"] == "drop"
    assert config["experiments"]["lipogram"]["methods"]["grpo"]["kl_beta"] == 0.0


def test_truthy_without_a_train_section_names_it():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    del config["experiments"]["truthy"]["train"]
    with pytest.raises(ConfigError, match="truthy.*train"):
        validate_config(config, SCHEMA)
