"""README's set-up commands pin what pyproject.toml and config.yaml pin (the llama-cpp-python build comes first)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_readme_pins_the_same_llama_cpp_python_and_torch():
    readme = (REPO / "README.md").read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    pinned = re.search(r'"llama-cpp-python==([\d.]+)"', pyproject).group(1)
    torch = re.search(r'"torch==([\d.]+)"', pyproject).group(1)
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.M)
    assert len(commands) == 2, "README has the two set-up commands"
    for command in commands:
        assert f"llama-cpp-python=={pinned}" in command and "--no-cache-dir" in command, command
        assert f"torch=={torch}" in command, command
    assert yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]["version"] == pinned
