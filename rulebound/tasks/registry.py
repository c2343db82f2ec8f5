"""The only list of tasks: every package under ``rulebound/tasks/`` that defines ``TASK``, plus plug-ins.

A plug-in is a module (dotted path, importable from the workflow's folder or installed) or a folder with an
``__init__.py`` (imported under the folder's name), named under ``task_plugins:`` in the config; it defines
``TASK``, an instance of ``rulebound.tasks.base.Task``, whose ``rules_file()`` and ``schema_file()`` name
the plug-in's own Snakemake rules and schema fragment. The Snakefile loads plug-ins before it validates the config and passes them
to every job in ``RULEBOUND_TASK_PLUGINS``, so job processes find the same tasks.

An unknown task fails here, once, naming the known ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
from pathlib import Path

from rulebound.errors import ConfigError
from rulebound.tasks.base import Task

PLUGINS_ENV = "RULEBOUND_TASK_PLUGINS"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TASKS: dict[str, Task] = {}
_LOADED: set[str] = set()


def register(task: Task) -> Task:
    """Add a task; its ``name`` must be new and a lowercase identifier."""
    if not isinstance(task, Task):
        raise ConfigError(f"{task!r} is not a rulebound.tasks.base.Task instance; a task module defines "
                          "TASK = YourTask() with YourTask a subclass of Task.")
    if not _NAME.match(task.name or ""):
        raise ConfigError(f"Task {type(task).__name__} has name {task.name!r}: set name to a lowercase identifier.")
    known = _TASKS.get(task.name)
    if known is not None and type(known) is not type(task):
        raise ConfigError(f"Two tasks are named {task.name!r} ({type(known).__module__} and "
                          f"{type(task).__module__}); rename one.")
    _TASKS[task.name] = task
    return task


def _task_of(module, where: str) -> Task:
    task = getattr(module, "TASK", None)
    if task is None:
        raise ConfigError(f"{where} defines no TASK; a task module ends with TASK = YourTask().")
    return register(task)


def _builtins() -> None:
    if "<builtins>" in _LOADED:
        return
    _LOADED.add("<builtins>")
    package = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(package)]), key=lambda i: i.name):
        if info.ispkg:
            _task_of(importlib.import_module(f"rulebound.tasks.{info.name}"), f"rulebound/tasks/{info.name}")


def _import_plugin(spec: str):
    path = Path(spec)
    if path.suffix == ".py" or path.is_dir() or os.sep in spec:
        init = path / "__init__.py" if path.is_dir() else path
        if not init.is_file():
            raise ConfigError(f"task_plugins: {spec} is neither an importable module nor a folder with "
                              "__init__.py (or a .py file).")
        name = path.stem if path.suffix == ".py" else path.name  # importable by that name once loaded
        existing = sys.modules.get(name)
        if existing is not None:
            if getattr(existing, "__file__", None) == str(init.resolve()):
                return existing  # the same plug-in, named another way
            raise ConfigError(f"task_plugins: {spec} would be imported as {name!r}, which is another module; "
                              "rename the plug-in's folder.")
        module_spec = importlib.util.spec_from_file_location(name, init.resolve(), submodule_search_locations=(
            [str(path.resolve())] if path.is_dir() else None))
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise ConfigError(f"task_plugins: {spec!r} cannot be imported ({exc}). Give a dotted module path that is "
                          "importable from the workflow's folder (or installed), or a path to a plug-in folder.") from exc


def load_plugins(specs=None) -> list[str]:
    """Import plug-in tasks (config ``task_plugins`` or, when None, ``$RULEBOUND_TASK_PLUGINS``); their names."""
    if specs is None:
        specs = [s for s in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if s]
    if not isinstance(specs, (list, tuple)):
        raise ConfigError(f"task_plugins must be a list of module paths or folders, got {specs!r}.")
    _builtins()
    names = []
    for spec in specs:
        if spec not in _LOADED:
            _task_of(_import_plugin(str(spec)), f"task plug-in {spec}")
            _LOADED.add(spec)
        names.append(spec)
    return names


def names() -> list[str]:
    load_plugins()
    return sorted(_TASKS)


def get(name: str) -> Task:
    """The task called ``name``; a ConfigError naming the known tasks if there is none."""
    load_plugins()
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"Unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}. A task of your own "
                          "is a plug-in: list its module under task_plugins: in the config.") from None


def rewards() -> dict:
    """Every task's GRPO rewards by name; two tasks may not give one name two functions."""
    out: dict = {}
    for name in names():
        for reward, fn in _TASKS[name].rewards().items():
            if reward in out and out[reward] is not fn:
                raise ConfigError(f"Two tasks define a reward named {reward!r}; rename one.")
            out[reward] = fn
    return out
