"""On a CUDA GPU: ORPO with both backends and both trainers, 4-bit QLoRA, and merging into a 16-bit base.

Each test builds a small random-init Llama on disk (nothing is downloaded). Skipped without CUDA.
Unsloth tests run in a subprocess: Unsloth patches transformers globally on import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu
REPO = Path(__file__).resolve().parents[1]


def write_tiny_llama(path: Path) -> Path:
    """Llama of Unsloth- and bitsandbytes-friendly sizes (head_dim 64, dims divisible by 64), word tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.test_fused_orpo import word_tokenizer

    tokenizer = word_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gpu") / "tiny-llama")


def train(model_dir, out_dir, *, backend, trainer="fused", load_in_4bit=False, steps=6, optim="adamw_torch",
          padding_free=False):
    """A few ORPO steps through rulebound's backend + trainer; returns the logged losses and saves the adapter."""
    from trl.experimental.orpo import ORPOConfig

    from rulebound.train.backend import LoraSettings, load_for_training
    from rulebound.train.orpo import trainer_class
    from tests.test_fused_orpo import preference_rows

    model, tokenizer, used = load_for_training(
        str(model_dir), LoraSettings(r=8, alpha=16), backend, max_seq_length=128, load_in_4bit=load_in_4bit,
        precision="bf16", gradient_checkpointing=True,
    )
    assert used == backend
    args = ORPOConfig(
        output_dir=str(out_dir / "scratch"), max_steps=steps, per_device_train_batch_size=4, learning_rate=5e-3,
        beta=0.1, max_length=128, bf16=True, use_cpu=not torch.cuda.is_available(), optim=optim, logging_steps=1,
        save_strategy="no", report_to="none", seed=0, data_seed=0, disable_tqdm=True, dataloader_num_workers=0,
    )
    extra = {"padding_free": padding_free} if trainer == "fused" else {}
    t = trainer_class(trainer)(model=model, args=args, train_dataset=preference_rows(8), processing_class=tokenizer,
                               **extra)
    t.train()
    model.save_pretrained(out_dir / "adapter", safe_serialization=True)
    logs = [e for e in t.state.log_history if "loss" in e]
    assert len(logs) == steps and all(torch.isfinite(torch.tensor(e["loss"])) for e in logs)
    return [e["loss"] for e in logs]


def test_orpo_rule_takes_the_fast_path_on_gpu(model_dir, tmp_path):
    """rulebound.train.orpo.train_orpo, as the Snakemake rule calls it, on the default GPU path."""
    import pandas as pd

    from rulebound.train.orpo import train_orpo
    from tests.test_fused_orpo import preference_rows

    parquet = tmp_path / "train.parquet"
    pd.DataFrame(preference_rows(16).to_list()).to_parquet(parquet)
    cfg = {"learning_rate": 5e-3, "batch_size": 4, "max_steps": 6, "max_length": 128, "trainer": "fused",
           "gradient_checkpointing": True, "lora": {"r": 8, "alpha": 16}}
    metrics = train_orpo(model_dir=str(model_dir), base_model="tiny", train_parquet=str(parquet),
                         adapter_dir=str(tmp_path / "adapter"), metrics_csv=str(tmp_path / "metrics.csv"), cfg=cfg,
                         experiment="gpu-test")
    assert len(metrics) == 6 and metrics["loss"].notna().all()
    assert metrics["loss"].iloc[-1] < metrics["loss"].iloc[0]
    assert "fast path" in (tmp_path / "adapter" / "README.md").read_text()


def run_isolated(code: str) -> dict:
    """Run ``code`` (which prints one JSON line last) in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("trainer", ["trl", "fused"])
def test_transformers_backend_trains(model_dir, tmp_path, trainer):
    losses = train(model_dir, tmp_path, backend="transformers", trainer=trainer)
    assert losses[-1] < losses[0]
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()


def test_fused_tracks_trl_bf16(model_dir, tmp_path):
    reference = train(model_dir, tmp_path / "trl", backend="transformers", trainer="trl")
    fused = train(model_dir, tmp_path / "fused", backend="transformers", trainer="fused")
    packed = train(model_dir, tmp_path / "packed", backend="transformers", trainer="fused", padding_free=True)
    assert fused == pytest.approx(reference, rel=1e-2)
    assert packed == pytest.approx(reference, rel=1e-2)


@pytest.mark.parametrize("trainer,padding_free", [("trl", False), ("fused", False), ("fused", True)])
def test_unsloth_backend_trains(model_dir, tmp_path, trainer, padding_free):
    result = run_isolated(f"""
        import unsloth, json
        from pathlib import Path
        from tests.test_gpu import train
        losses = train(Path({str(model_dir)!r}), Path({str(tmp_path)!r}), backend="unsloth", trainer={trainer!r},
                       padding_free={padding_free})
        print(json.dumps({{"losses": losses}}))
    """)
    assert result["losses"][-1] < result["losses"][0]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_unsloth_fused_matches_unsloth_trl(model_dir, tmp_path):
    """Same Unsloth-patched model, same batch: the fused loss equals TRL's to bf16 precision, packed or not."""
    result = run_isolated(f"""
        import unsloth, json, torch
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        from rulebound.train.backend import LoraSettings, load_for_training
        from rulebound.train.fused_orpo import FusedORPOTrainer
        from tests.test_fused_orpo import preference_rows
        model, tok, _ = load_for_training({str(model_dir)!r}, LoraSettings(r=8, alpha=16), "unsloth",
                                          max_seq_length=128, precision="bf16", gradient_checkpointing=True)
        args = ORPOConfig(output_dir={str(tmp_path)!r}, per_device_train_batch_size=4, max_length=128, bf16=True,
                          report_to="none")
        out = {{}}
        for name, cls, kw in [("trl", ORPOTrainer, {{}}), ("fused", FusedORPOTrainer, {{}}),
                              ("packed", FusedORPOTrainer, {{"padding_free": True}})]:
            t = cls(model=model, args=args, train_dataset=preference_rows(8), processing_class=tok, **kw)
            batch = t._prepare_inputs(t.data_collator([t.train_dataset[i] for i in range(4)]))
            loss, metrics = t.get_batch_loss_metrics(model, batch)
            out[name] = {{"loss": loss.item(), **metrics}}
        print(json.dumps(out))
    """)
    for name in ("fused", "packed"):
        for key in ("loss", "nll_loss", "logps/chosen", "logps/rejected", "log_odds_ratio"):
            assert result[name][key] == pytest.approx(result["trl"][key], rel=1e-2, abs=1e-2), (name, key)


def test_qlora_4bit_trains_and_merges_into_16bit_base(model_dir, tmp_path):
    """QLoRA (nf4 + paged_adamw_8bit), then merge into the base reloaded in bf16, never into 4-bit weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    losses = train(model_dir, tmp_path, backend="transformers", load_in_4bit=True, optim="paged_adamw_8bit")
    assert losses[-1] < losses[0]

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": 0})
    assert not getattr(base, "is_loaded_in_4bit", False)
    adapted = PeftModel.from_pretrained(base, tmp_path / "adapter")
    ids = torch.randint(4, base.config.vocab_size, (2, 24), device="cuda")
    with torch.no_grad():
        expected = adapted(ids).logits.float()
    merged = adapted.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged", safe_serialization=True)

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.bfloat16, device_map={"": 0})
    assert reloaded.dtype == torch.bfloat16
    assert not any("lora" in name for name in reloaded.state_dict())
    with torch.no_grad():
        actual = reloaded(ids).logits.float()
    assert (actual - expected).abs().max() < 0.05 * expected.abs().max()


def test_unsloth_qlora_4bit_trains(model_dir, tmp_path):
    result = run_isolated(f"""
        import unsloth, json
        from pathlib import Path
        from tests.test_gpu import train
        losses = train(Path({str(model_dir)!r}), Path({str(tmp_path)!r}), backend="unsloth", load_in_4bit=True,
                       optim="paged_adamw_8bit")
        print(json.dumps({{"losses": losses}}))
    """)
    assert result["losses"][-1] < result["losses"][0]
