"""GRPO rewards as plain functions ``fn(completions, *, progress=0.0, **params)``, and their resolution.

``progress`` is the fraction of training done (0 to 1), so a reward can tighten over time (the lipogram
seed's curriculum). A reward that takes ``prompts=`` also gets the user's last turn of each prompt. The
rewards here are about an answer's shape (length, loops, sentences) and serve any task; a task adds its
own (``Task.rewards``: the lipogram's ``no_e`` and ``on_topic``). A config names rewards by name or by
dotted path, with parameters:

    rewards: [no_e, {name: length_curriculum, start_len: 10, ramp: 60}, {name: mypkg.rewards:polite}]

``resolve_rewards`` checks every spec before training starts: a typo must not cost a GPU hour.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable

from rulebound.errors import ConfigError

RewardFn = Callable[[list[str], float], list[float]]


def short_penalty(completions: list[str], *, progress: float = 0.0, min_chars: int = 5,
                  penalty: float = -2.0) -> list[float]:
    """The seed's fix for laziness: ``penalty`` when the stripped completion has fewer than ``min_chars``."""
    return [float(penalty) if len(text.strip()) < min_chars else 0.0 for text in completions]


def length_curriculum(completions: list[str], *, progress: float = 0.0, start_len: float = 10,
                      ramp: float = 60) -> list[float]:
    """The seed's curriculum: the length target grows from ``start_len`` to ``start_len + ramp`` characters.

    Below the target the reward is the relative shortfall ``(length - target) / target`` (in [-1, 0));
    at or above it ``1.5 + length / 100``, so longer answers keep paying once the target is met.
    """
    if start_len <= 0 or ramp <= 0:
        raise ConfigError(f"length_curriculum needs start_len > 0 and ramp > 0 (characters), got "
                          f"start_len={start_len}, ramp={ramp}; the seed used start_len=10, ramp=60.")
    target = start_len + progress * ramp
    rewards = []
    for text in completions:
        length = len(text.strip())
        rewards.append((length - target) / target if length < target else 1.5 + length / 100.0)
    return rewards


def no_repeat(completions: list[str], *, progress: float = 0.0, n: int = 2, penalty: float = -3.0) -> list[float]:
    """Against loops ("a fluffy, fluffy, and a fluffy"): ``penalty`` times the share of repeated word n-grams.

    0 for a completion whose word n-grams are all distinct (or that has fewer than n words), ``penalty`` in
    the limit of one n-gram over and over. Not in the seed: its curriculum answers stayed loop-free on an
    A100's budget; on a CPU's 20 steps the ramp alone rewards length however it is made.
    """
    if n < 1:
        raise ConfigError(f"no_repeat: n must be at least 1 (words per n-gram), got {n}")
    rewards = []
    for text in completions:
        words = [w for w in (t.strip(".,;:!?\"'()[]-").lower() for t in text.split()) if w]
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        rewards.append(float(penalty) * (1.0 - len(set(grams)) / len(grams)) if grams else 0.0)
    return rewards


def complete_sentence(completions: list[str], *, progress: float = 0.0, bonus: float = 1.0,
                      penalty: float = -1.0) -> list[float]:
    """``bonus`` when the stripped completion ends a sentence (. ! ?), else ``penalty``: cut-off loops lose."""
    return [float(bonus) if text.strip().endswith((".", "!", "?")) else float(penalty) for text in completions]


SHAPE_REWARDS: dict[str, Callable[..., list[float]]] = {
    "short_penalty": short_penalty,
    "length_curriculum": length_curriculum,
    "no_repeat": no_repeat,
    "complete_sentence": complete_sentence,
}


def available() -> dict[str, Callable[..., list[float]]]:
    """Every reward a config can name: the shape rewards and those of every task."""
    from rulebound.tasks import registry

    return {**registry.rewards(), **SHAPE_REWARDS}


def _available() -> str:
    return f"available rewards: {', '.join(available())}; or a dotted path 'package.module:function'"


def _lookup(name: str) -> Callable[..., list[float]]:
    rewards = available()
    if name in rewards:
        return rewards[name]
    if ":" not in name:
        raise ConfigError(f"Unknown reward {name!r}; {_available()}.")
    module_name, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"Reward {name!r} cannot be imported ({type(exc).__name__}: {exc}). Check that "
                          f"{module_name} is importable (installed, or on PYTHONPATH) and defines {attr}; "
                          f"{_available()}.") from exc
    if not callable(fn):
        raise ConfigError(f"Reward {name!r} is not a function; {_available()}.")
    return fn


def _parse(spec) -> tuple[str, dict]:
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        params = dict(spec)
        return params.pop("name"), params
    raise ConfigError(f"Reward spec {spec!r} is neither a name nor a mapping with a 'name' key, "
                      "e.g. no_e or {name: length_curriculum, ramp: 60}.")


def _check_params(name: str, fn, params: dict) -> None:
    signature = inspect.signature(fn)
    extra = {"prompts": ["probe"]} if takes_prompts(fn) else {}
    try:
        signature.bind(["probe"], progress=0.0, **extra, **params)
    except TypeError as exc:
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind is p.KEYWORD_ONLY and p.name not in ("progress", "prompts")]
        raise ConfigError(f"Reward {name!r} does not take these parameters: {exc}. It takes "
                          f"{', '.join(accepted) or 'no parameters'} (and must accept progress=...); "
                          f"{_available()}.") from None


def _dry_run(name: str, fn, params: dict) -> None:
    """Call the reward once on two probes, so bad values fail now rather than at the first training step."""
    probes = ["", "A short probe answer."]
    extra = {"prompts": ["Describe a probe.", "Describe a probe."]} if takes_prompts(fn) else {}
    try:
        scores = fn(probes, progress=0.0, **extra, **params)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"Reward {name!r} with parameters {params} fails on a probe completion "
                          f"({type(exc).__name__}: {exc}); fix its parameters.") from exc
    if len(scores) != len(probes) or not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
        raise ConfigError(f"Reward {name!r} must return one finite number per completion; on {len(probes)} "
                          f"probes it returned {scores!r}.")


def takes_prompts(fn) -> bool:
    """Whether a reward reads the prompts (a ``prompts`` keyword) besides the completions."""
    return "prompts" in inspect.signature(fn).parameters


def _bind(fn, params: dict, label: str) -> RewardFn:
    wants_prompts = takes_prompts(fn)

    def reward(completions: list[str], progress: float = 0.0, prompts: list[str] | None = None) -> list[float]:
        if wants_prompts:
            if prompts is None or len(prompts) != len(completions):
                raise ValueError(f"Reward {label!r} reads the prompts: pass one prompt per completion.")
            return fn(completions, progress=progress, prompts=prompts, **params)
        return fn(completions, progress=progress, **params)

    reward.__name__ = reward.__qualname__ = label
    return reward


def resolve_rewards(specs: list) -> list[tuple[str, RewardFn]]:
    """(name, reward(completions, progress)) per spec, parameters bound and checked now.

    A dotted path is named by its function (``mypkg.rewards:polite`` -> ``polite``) so logged metrics stay
    short; names may repeat (two curricula), the caller makes them distinct if it needs to.
    """
    if not isinstance(specs, (list, tuple)):
        raise ConfigError(f"Rewards must be a list of names or mappings, got {specs!r}.")
    resolved = []
    for spec in specs:
        name, params = _parse(spec)
        fn = _lookup(name)
        _check_params(name, fn, params)
        _dry_run(name, fn, params)
        label = name.rpartition(":")[2]
        resolved.append((label, _bind(fn, params, label)))
    return resolved
