"""Shared fixtures: the embedded base model (prepared once per session) and tiny random models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/smoke/pipeline.py as smoke.pipeline


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: runs the pipeline end to end")
    config.addinivalue_line("markers", "quality: trains the default experiments and checks their quality bars")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):  # not `"gpu" in item.keywords`: keywords hold folder names too
            item.add_marker(skip)


@pytest.fixture(scope="session")
def embedded_model_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct from the embedded GGUF, as an HF folder (dequantized once per machine, about 40 s;
    then copied from ~/.cache/rulebound/models)."""
    from rulebound.models import prepare_model

    out = tmp_path_factory.mktemp("models") / "smollm2-135m-instruct"
    prepare_model("embedded:smollm2-135m-instruct", out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_model_dir) -> Path:
    """A 2-layer random-init Llama with SmolLM2's tokenizer and chat template: fast to train and export."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke pipeline, built once per session; tests that only read its artifacts share it (do not modify)."""
    from smoke.pipeline import build_smoke

    return build_smoke(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def gate_run(tmp_path_factory):
    """The quality gate's run (tests/smoke/gate.py): the default politeness experiment, trained as config.yaml says."""
    from smoke.gate import build_gate

    return build_gate(tmp_path_factory.mktemp("quality"))
