"""The hub folder (exact contents, model card), when a push is attempted, and that the token never leaks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pandas as pd
import pytest

from rulebound.export import publish as rpublish
from rulebound.errors import RuleboundError
from rulebound.export.publish import build_publish_folder, publish

from conftest import REPO

FAKE_TOKEN = "hf_FAKEtoken0123456789abcdefghijklmnopq"
CARD = """---
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: peft
---

# politeness LoRA adapter (ORPO)

Backend: `transformers`, trainer: `ORPOTrainer`.
"""


@pytest.fixture
def run_outputs(tmp_path):
    """An adapter folder as train_orpo leaves it (with training leftovers), an eval summary and curves."""
    adapter = tmp_path / "adapter"
    (adapter / "checkpoint-2").mkdir(parents=True)
    (adapter / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (adapter / "tokenizer.json").write_text("{}")
    (adapter / "README.md").write_text(CARD)
    summary = tmp_path / "summary.csv"
    pd.DataFrame([
        {"variant": "adapter", "group": "with please", "n": 40, "correct": 39, "rate": 0.975, "ci_low": 0.87,
         "ci_high": 0.996, "refusal_rate": 0.0},
        {"variant": "Q4_K_M", "group": "all", "n": 80, "correct": 76, "rate": 0.95, "ci_low": 0.88, "ci_high": 0.98,
         "refusal_rate": 0.5},
    ]).to_csv(summary, index=False)
    curves = tmp_path / "report" / "training_curves.png"
    curves.parent.mkdir()
    curves.write_bytes(b"\x89PNG fake")
    return adapter, summary, curves


def make_folder(tmp_path, run_outputs):
    adapter, summary, curves = run_outputs
    return build_publish_folder(adapter, summary, [curves], tmp_path / "results" / "politeness" / "publish",
                                experiment="politeness", base_model="embedded:smollm2-135m-instruct",
                                license="apache-2.0")


def test_folder_holds_adapter_card_and_curves_only(tmp_path, run_outputs):
    folder = make_folder(tmp_path, run_outputs)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "training_curves.png"]
    assert (folder / "adapter_model.safetensors").read_bytes() == b"weights"
    card = (folder / "README.md").read_text()
    header = card.split("\n---\n", 1)[0]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in header and "license: apache-2.0" in header
    assert "library_name: peft" in header and "- politeness" in header
    assert card.count("\n---\n") == 1  # the training card's own front matter was replaced, not repeated
    assert "trainer: `ORPOTrainer`" in card  # the training card's body is kept
    assert "| variant | with please | all |" in card
    assert "| adapter | 0.97 [0.87, 1.00] n=40 | – |" in card and "| Q4_K_M | – | 0.95 [0.88, 0.98] n=80 |" in card
    assert "![training curves](training_curves.png)" in card
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_folder_refuses_an_incomplete_adapter(tmp_path, run_outputs):
    adapter, summary, curves = run_outputs
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(RuleboundError, match="adapter_model.safetensors"):
        build_publish_folder(adapter, summary, [curves], tmp_path / "out", experiment="x", base_model="hf:a/b")
    assert not (tmp_path / "out").exists()


def _no_push(*args, **kwargs):
    raise AssertionError("push attempted")


def test_no_push_without_a_repo(tmp_path, run_outputs, monkeypatch, caplog):
    folder = make_folder(tmp_path, run_outputs)
    monkeypatch.setattr(rpublish, "push_folder", _no_push)
    with caplog.at_level(logging.INFO, logger="rulebound.export.publish"):
        assert publish(folder, experiment="politeness", settings={"repo_id": None},
                       environ={"HF_TOKEN": FAKE_TOKEN}) is None
    assert "not pushing" in caplog.text and "publish.repo_id is not set" in caplog.text
    assert FAKE_TOKEN not in caplog.text


def test_a_repo_without_a_token_is_one_clear_error_and_the_folder_stays(tmp_path, run_outputs, monkeypatch):
    folder = make_folder(tmp_path, run_outputs)
    before = sorted((p.name, p.stat().st_size) for p in folder.iterdir())
    monkeypatch.setattr(rpublish, "push_folder", _no_push)
    with pytest.raises(RuleboundError, match="HF_TOKEN is not set in the environment") as err:
        publish(folder, experiment="politeness", settings={"repo_id": "someone/politeness"}, environ={})
    assert "someone/politeness" in str(err.value) and "snakemake publish" in str(err.value)
    assert sorted((p.name, p.stat().st_size) for p in folder.iterdir()) == before


PUSH_CODE = """
import sys
from rulebound.io import setup_logging
from rulebound.export.publish import publish_all
setup_logging(sys.argv[2])
publish_all([sys.argv[1]], {"politeness": {"repo_id": "someone/politeness", "private": True}})
"""


def test_failed_push_is_one_clear_error_and_never_shows_the_token(tmp_path, run_outputs):
    folder = make_folder(tmp_path, run_outputs)
    log = tmp_path / "logs" / "publish" / "publish.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_OFFLINE")}
    env.update(HF_TOKEN=FAKE_TOKEN, HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO),  # nothing leaves the box
               HF_HOME=str(tmp_path / "hf-home"))
    proc = subprocess.run([sys.executable, "-c", PUSH_CODE, str(folder), str(log)], capture_output=True, text=True,
                          env=env, timeout=50)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rulebound.errors.RuleboundError: Could not push"), proc.stderr[-2000:]
    assert "someone/politeness" in last and "http://127.0.0.1:9" in last and "HF_TOKEN" in last
    assert "During handling of the above exception" not in proc.stderr  # the raw exception is not chained
    assert (folder / "adapter_model.safetensors").is_file()  # a failed push leaves the folder complete
    assert FAKE_TOKEN not in proc.stdout + proc.stderr
    written = [p for p in [*folder.rglob("*"), *log.parent.rglob("*"), *(tmp_path / "hf-home").rglob("*")]
               if p.is_file()]
    assert log in written and "ERROR rulebound.export.publish: Could not push" in log.read_text()
    for path in written:
        assert FAKE_TOKEN.encode() not in path.read_bytes(), path


def test_eval_table_reads_a_preference_summary(tmp_path):
    from rulebound.export.publish import eval_table

    path = tmp_path / "summary.csv"
    pd.DataFrame({"variant": ["base", "adapter"], "group": ["all", "all"], "n": [38, 38], "correct": [18, 20],
                  "accuracy": [0.47, 0.53], "ci_low": [0.32, 0.37], "ci_high": [0.63, 0.68]}).to_csv(path, index=False)
    table = eval_table(path)
    assert "| adapter | 0.53 [0.37, 0.68] n=38 |" in table
