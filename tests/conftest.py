"""Shared fixtures: the embedded base model (prepared once per session) and tiny random models."""

from __future__ import annotations

import os
import signal
import subprocess
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


PREBUILD_TESTS = ("tests/test_llama_server.py",)  # the tests that need the real llama-server
_prebuild: dict = {}


def pytest_collection_finish(session):
    """Start building llama-server in the background, at idle CPU priority, when a selected test needs it and it
    is not cached yet.

    The build (about 450 s of two cores) then runs on the cores the earlier tests leave idle instead of after
    them; the test's own ``build_llama_server`` call waits on the build's lock and reuses its binary, or builds
    it itself and reports the error if the background build failed. ``RULEBOUND_PREBUILD=0`` turns this off.
    """
    import yaml

    from rulebound.export.gguf import default_cache_dir
    from rulebound.serve import cached_llama_server

    if os.environ.get("RULEBOUND_PREBUILD", "1") == "0" or session.config.option.collectonly:
        return
    if not any(item.nodeid.startswith(PREBUILD_TESTS) for item in session.items):
        return
    version = str(yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]["version"])
    if cached_llama_server(version).is_file():
        return
    log_path = default_cache_dir() / "llama-server-prebuild.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "rulebound.serve", "build", "--config", str(REPO / "config.yaml")]
    with open(log_path, "wb") as log_file:
        _prebuild["process"] = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log_file,
                                                stderr=subprocess.STDOUT, start_new_session=True,
                                                preexec_fn=_idle_priority)
    _prebuild["log"] = log_path
    print(f"\nbuilding llama-server in the background (idle CPU priority; log {log_path})")


def _idle_priority() -> None:
    """SCHED_IDLE where Linux has it: the build then runs only on a core nothing else wants. nice 19 is not
    enough: llama.cpp's two threads sleep at a barrier every token, the niced compiler takes the core, and a
    2-thread greedy decode test took 119 s instead of 6 s beside it (13 s beside a SCHED_IDLE build)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def pytest_sessionfinish(session):
    """Stop a background llama-server build still running (the tests that needed it did not run to it)."""
    process = _prebuild.pop("process", None)
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the build and its compilers; the build removes its temp folder
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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
