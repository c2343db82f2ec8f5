"""Tasks are plug-ins: one registry; a task from outside rulebound plans through the pipeline unchanged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rulebound.config import validate_config
from rulebound.errors import ConfigError
from rulebound.tasks import registry
from rulebound.tasks.base import Task

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugins" / "echo_task"
SCHEMA = REPO / "schemas" / "config.schema.yaml"


def echo_config(plugin: str = str(PLUGIN)) -> dict:
    return {"models": {"smol": {"source": "embedded:smollm2-135m-instruct"}},
            "llama_cpp": yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"],
            "task_plugins": [plugin],
            "experiments": {"parrot": {"task": "echo", "model": "smol",
                                       "train": {"learning_rate": 1e-3, "batch_size": 2, "max_steps": 2}}}}


def test_builtin_tasks_come_from_the_task_folders():
    names = registry.names()
    assert {"politeness", "truthy", "lipogram"} <= set(names)
    for name in names:
        task = registry.get(name)
        assert isinstance(task, Task) and task.schema_file().is_file(), name


def test_an_unknown_task_fails_once_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"Unknown task 'poetry'; known tasks: .*lipogram, politeness.*task_plugins"):
        registry.get("poetry")


def test_a_plugin_registers_and_validates(tmp_path):
    config = echo_config()
    validate_config(config, SCHEMA)
    assert "echo" in registry.names()
    exp = config["experiments"]["parrot"]
    assert exp["evaluate"]["variants"] == ["base", "adapter", "Q4_K_M"]  # its own schema fragment's defaults
    assert exp["train"]["lora"]["r"] == 16  # the shared orpo_train definition's
    [run] = registry.get("echo").runs("parrot", exp)
    assert (run.name, run.method, run.data) == ("parrot", "orpo", {"train": "results/parrot/data/train.parquet"})


def test_bad_plugins_are_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot be imported"):
        registry.load_plugins(["no_such_plugin_module"])
    (tmp_path / "notask").mkdir()
    (tmp_path / "notask" / "__init__.py").write_text("X = 1\n")
    with pytest.raises(ConfigError, match="defines no TASK"):
        registry.load_plugins([str(tmp_path / "notask")])
    with pytest.raises(ConfigError, match="neither an importable module nor a folder"):
        registry.load_plugins([str(tmp_path / "missing_folder")])


def test_the_plugin_dry_runs_through_every_stage(tmp_path):
    """No stage file names the echo task, yet its experiment plans data, training, export, evaluation, report."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(echo_config()))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "config.yaml"), "--cores", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    planned = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert {"build_echo_pairs", "format_data", "train_orpo", "merge_adapter", "convert_gguf", "quantize_gguf",
            "evaluate_hf", "evaluate_gguf", "summarize_eval", "plot_report", "render_report", "reproduce",
            "ollama_modelfile", "publish_folder"} <= planned, sorted(planned)
    assert not planned & {"build_prompts", "distill_answers", "train_grpo", "build_lipogram_prompts"}
    stages = [REPO / "Snakefile", *(REPO / "rules").glob("*.smk"), *(REPO / "rulebound").glob("*.py"),
              *(REPO / "rulebound" / "export").glob("*.py"), *(REPO / "rulebound" / "report").glob("*.py"),
              *(REPO / "rulebound" / "train").glob("*.py")]
    assert not [p for p in stages if re.search(r"\becho\b", p.read_text())]  # no stage knows the task


def test_no_stage_names_a_task():
    """The stages branch on nothing task-specific: no string in their code is a task's name (comments may cite one)."""
    import ast

    names = set(registry.names())
    modules = [*(REPO / "rulebound").glob("*.py"), *(REPO / "rulebound" / "export").glob("*.py"),
               *(REPO / "rulebound" / "report").glob("*.py"), *(REPO / "rulebound" / "train").glob("*.py")]
    offenders = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]:
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
        offenders += [f"{path.relative_to(REPO)} {m!r}" for m in re.findall(r"[\"']([a-z_]+)[\"']", code) if m in names]
    assert not offenders, offenders
