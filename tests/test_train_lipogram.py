"""SFT and GRPO LoRA training for the lipogram methods, on a tiny random Llama (a few seconds each)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest

from rulebound.errors import ConfigError

QA = [
    ("Name a fruit.", "A banana."),
    ("What is a cat?", "A small animal with fur."),
    ("Say hi.", "Hi!"),
    ("Count to two.", "On, two."),
]
SFT_CFG = {"method": "sft", "max_steps": 2, "learning_rate": 1e-3, "batch_size": 2, "max_length": 64, "seed": 1,
           "lora": {"r": 4, "alpha": 8}}
GRPO_CFG = {"method": "grpo", "init": "sft", "rewards": ["letters", {"name": "ramp", "target": 20}],
            "num_generations": 2, "max_completion_length": 8, "max_steps": 2, "learning_rate": 1e-3,
            "batch_size": 2, "kl_beta": 0.04, "seed": 1}


def letters(texts: list[str], progress: float) -> list[float]:
    """Tiny lipogram reward: minus the count of the letter e."""
    return [-float(t.lower().count("e")) for t in texts]


def ramp(texts: list[str], progress: float, target: int = 20) -> list[float]:
    """Tiny curriculum reward: the length target grows with progress (records what it saw)."""
    ramp.seen.append(progress)
    return [min(len(t), target * progress) / target for t in texts]


ramp.seen = []


def fake_resolve_rewards(specs: list):
    """resolve_rewards' contract on two tiny rewards: names or {name, **params}; ConfigError otherwise."""
    known = {"letters": letters, "ramp": ramp}
    out = []
    for spec in specs:
        name, params = (spec, {}) if isinstance(spec, str) else (spec["name"], {k: v for k, v in spec.items()
                                                                              if k != "name"})
        if name not in known:
            raise ConfigError(f"Unknown reward {name!r}; known: {', '.join(known)}.")
        fn = known[name]
        out.append((name, lambda texts, progress, fn=fn, params=params: fn(texts, progress, **params)))
    return out


@pytest.fixture
def tiny_rewards(monkeypatch):
    module = types.ModuleType("rulebound.rewards")
    module.resolve_rewards = fake_resolve_rewards
    monkeypatch.setitem(sys.modules, "rulebound.rewards", module)
    ramp.seen.clear()


@pytest.fixture(scope="module")
def sft_parquet(tmp_path_factory):
    rows = [{"prompt": json.dumps([{"role": "user", "content": q}]) if i % 2 else q, "completion": a}
            for i, (q, a) in enumerate(QA)]
    path = tmp_path_factory.mktemp("sft") / "sft.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def prompts_parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("grpo") / "prompts.parquet"
    pd.DataFrame({"prompt": [q for q, _ in QA]}).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, sft_parquet, tmp_path_factory):
    from rulebound.train.sft import train_sft

    out = tmp_path_factory.mktemp("sft-run")
    metrics = train_sft(model_dir=str(tiny_model_dir), base_model="embedded:smollm2-135m-instruct",
                        train_parquet=str(sft_parquet), adapter_dir=str(out / "adapter"),
                        metrics_csv=str(out / "metrics.csv"), cfg=SFT_CFG, experiment="lipogram/sft")
    return out, metrics


def test_messages_from_cells():
    from rulebound.train.grpo import completion_text
    from rulebound.train.sft import as_messages

    assert as_messages("Hi", "user") == [{"role": "user", "content": "Hi"}]
    assert as_messages('[{"role": "user", "content": "Hi"}]', "user") == [{"role": "user", "content": "Hi"}]
    assert as_messages("[not json]", "user") == [{"role": "user", "content": "[not json]"}]
    assert as_messages([{"role": "assistant", "content": "Ok"}], "assistant")[0]["content"] == "Ok"
    parquet_cell = np.array([{"role": "user", "content": "Hi"}], dtype=object)  # a list column read back
    assert as_messages(parquet_cell, "user") == [{"role": "user", "content": "Hi"}]
    assert completion_text([{"role": "assistant", "content": "Ok"}]) == "Ok"
    assert completion_text("Ok") == "Ok"


def test_sft_loss_covers_the_answer_only(tiny_model_dir, sft_parquet, tmp_path):
    from rulebound.train.sft import build_sft_trainer, load_model, load_sft_data

    model, tokenizer, _ = load_model(str(tiny_model_dir), SFT_CFG)
    trainer = build_sft_trainer(model, tokenizer, load_sft_data(sft_parquet), SFT_CFG, str(tmp_path))
    for row, (question, answer) in zip(trainer.train_dataset, QA):
        ids, labels = row["input_ids"], row["labels"]
        start = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label in labels[:start])
        assert labels[start:] == ids[start:]
        assert question in tokenizer.decode(ids[:start])  # the templated prompt is context only
        assert tokenizer.decode(ids[start:]).startswith(answer + tokenizer.eos_token)  # answer and end of turn
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(QA))])
    assert ((batch["labels"] == -100) | (batch["labels"] == batch["input_ids"])).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()  # padding is not trained either


def test_sft_writes_a_loadable_adapter_and_step_metrics(sft_run, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, metrics = sft_run
    adapter = out / "adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= {
        p.name for p in adapter.iterdir()}
    card = (adapter / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "- sft" in card
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)
    csv = pd.read_csv(out / "metrics.csv")
    assert list(csv["step"]) == [1, 2] and csv["loss"].notna().all() and "learning_rate" in csv
    assert metrics["loss"].tolist() == pytest.approx(csv["loss"].tolist())


def test_init_adapter_starts_from_its_weights_trainable(sft_run, tiny_model_dir):
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from rulebound.train.backend import LoraSettings, _load_adapter_weights, adapter_lora_settings, load_for_training

    adapter = sft_run[0] / "adapter"
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    model, _, _ = load_for_training(str(tiny_model_dir), LoraSettings(r=16), "transformers",
                                    init_adapter=str(adapter))
    loaded = get_peft_model_state_dict(model)
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    assert adapter_lora_settings(str(adapter)).r == 4  # the adapter's shape, not the config's r=16
    fresh, _, _ = load_for_training(str(tiny_model_dir), adapter_lora_settings(str(adapter)), "transformers")
    _load_adapter_weights(fresh, str(adapter))  # the Unsloth path: same shape, weights copied in
    assert all(torch.equal(saved[k], v) for k, v in get_peft_model_state_dict(fresh).items())
    with pytest.raises(ConfigError, match="adapter_config.json"):
        adapter_lora_settings(str(tiny_model_dir))


def test_grpo_from_sft_logs_each_reward_and_a_rising_progress(sft_run, tiny_model_dir, prompts_parquet, tmp_path,
                                                              tiny_rewards):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rulebound.train.grpo import train_grpo

    metrics = train_grpo(model_dir=str(tiny_model_dir), base_model="embedded:smollm2-135m-instruct",
                         prompts_parquet=str(prompts_parquet), adapter_dir=str(tmp_path / "adapter"),
                         metrics_csv=str(tmp_path / "metrics.csv"), cfg=GRPO_CFG, experiment="lipogram/grpo",
                         init_adapter=str(sft_run[0] / "adapter"))
    csv = pd.read_csv(tmp_path / "metrics.csv")
    for column in ("loss", "learning_rate", "reward", "reward_std", "rewards/letters/mean", "rewards/ramp/mean",
                   "completions/mean_length", "progress", "kl"):
        assert column in csv and csv[column].notna().all(), column
    assert list(csv["step"]) == [1, 2] and csv["progress"].is_monotonic_increasing
    assert csv["progress"].iloc[-1] > csv["progress"].iloc[0] and sorted(set(ramp.seen)) == [0.0, 0.5]
    assert len(metrics) == 2
    adapter = tmp_path / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "ref").exists()
    card = (adapter / "README.md").read_text()
    assert "- grpo" in card and "LoRA: r=4, alpha=8" in card  # the SFT adapter's shape, trained on
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter)


@pytest.mark.parametrize("change, message", [
    ({"num_generations": 1}, "num_generations"),
    ({"batch_size": 3, "gradient_accumulation_steps": 2}, "prompts file has only 4"),
    ({"rewards": []}, "at least one reward"),
])
def test_grpo_batch_and_reward_errors_come_before_the_model(change, message, prompts_parquet, tmp_path,
                                                           tiny_rewards, monkeypatch):
    run_without_model(monkeypatch, prompts_parquet, tmp_path, {**GRPO_CFG, **change}, message)


def test_unknown_reward_fails_before_the_model(prompts_parquet, tmp_path, monkeypatch):
    try:  # the real rewards module where it exists, else the contract's stand-in
        import rulebound.rewards  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "rulebound.rewards", types.SimpleNamespace(
            resolve_rewards=fake_resolve_rewards))
    run_without_model(monkeypatch, prompts_parquet, tmp_path, {**GRPO_CFG, "rewards": ["no_such_reward"]},
                      "no_such_reward")


def test_configured_rewards_become_trl_reward_functions():
    """The real rulebound.rewards specs of config.yaml, adapted: TRL names, chat completions, progress."""
    pytest.importorskip("rulebound.rewards")
    from rulebound.train.grpo import reward_functions

    specs = ["no_e", "short_penalty", {"name": "length_curriculum", "start_len": 8, "ramp": 40},
             {"name": "length_curriculum", "start_len": 4, "ramp": 4}]
    funcs = reward_functions(specs)
    assert [f.__name__ for f in funcs] == ["no_e", "short_penalty", "length_curriculum", "length_curriculum_2"]
    chats = [[{"role": "assistant", "content": "Barky fur, wagging tail."}], [{"role": "assistant", "content": "e"}]]
    logged = {}
    state = types.SimpleNamespace(global_step=5, max_steps=10)
    scores = funcs[0](prompts=[[]] * 2, completions=chats, trainer_state=state, log_metric=logged.__setitem__)
    assert scores == [3.0, -1.5] and logged == {"progress": 0.5}
    early, late = (funcs[2](prompts=[[]], completions=chats[:1], trainer_state=types.SimpleNamespace(
        global_step=step, max_steps=10)) for step in (0, 9))
    assert early[0] > late[0]  # the length target has grown past the answer


def test_a_prompt_reading_reward_gets_the_users_last_turn_from_trl():
    from rulebound.train.grpo import reward_functions

    (topic,) = reward_functions(["on_topic"])
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Describe a dog."}],
               "Explain gravity."]
    chats = [[{"role": "assistant", "content": "A dog naps."}], [{"role": "assistant", "content": "A cat naps."}]]
    assert topic(prompts=prompts, completions=chats, trainer_state=types.SimpleNamespace(global_step=0,
                                                                                         max_steps=4)) == [1.0, 0.0]


def run_without_model(monkeypatch, prompts_parquet, tmp_path, cfg, message):
    import rulebound.train.sft as sft
    from rulebound.train.grpo import train_grpo

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the configuration was checked")

    monkeypatch.setattr(sft, "load_for_training", no_model)
    with pytest.raises(ConfigError, match=message):
        train_grpo(model_dir="unused", base_model="unused", prompts_parquet=str(prompts_parquet),
                   adapter_dir=str(tmp_path / "adapter"), metrics_csv=str(tmp_path / "metrics.csv"), cfg=cfg,
                   experiment="lipogram/grpo")
    assert not (tmp_path / "adapter").exists()
