"""GRPO rewards for the lipogram seed, as plain functions ``fn(completions, *, progress=0.0, **params)``.

``progress`` is the fraction of training done (0 to 1), so a reward can tighten over time (the seed's
curriculum). A config names rewards by registry name or by dotted path, with parameters:

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


def no_e(completions: list[str], *, progress: float = 0.0, reward_free: float = 3.0,
         penalty_per_e: float = -1.5, ramp_from: float = 1.0, letter: str = "e") -> list[float]:
    """The seed's reward: ``reward_free`` for a completion without e/E, else ``penalty_per_e`` per e.

    ``letter`` bans another letter instead (either case), for a lipogram experiment with ``letter:`` set.
    ``ramp_from`` < 1 is the seed's curriculum for the penalty ("gradually increase the penalties for e's
    over time"): the penalty starts at ``ramp_from`` times its size and grows linearly to full size.
    """
    if not 0 < ramp_from <= 1:
        raise ConfigError(f"no_e: ramp_from must be in (0, 1], got {ramp_from}")
    if not (isinstance(letter, str) and len(letter) == 1 and letter.isalpha()):
        raise ConfigError(f"no_e: letter must be one letter, got {letter!r}")
    scale = ramp_from + (1.0 - ramp_from) * min(max(progress, 0.0), 1.0)
    rewards = []
    for text in completions:
        count = text.lower().count(letter.lower())
        rewards.append(float(reward_free) if count == 0 else float(penalty_per_e) * count * scale)
    return rewards


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


_TOPIC_STOP = set("""what how why who when where which about with from into over under for and but not you your yours
our out its it's this that than then them they two one some any all many much more most very just also only can
could would should will shall may might must does did done doing had has have having was were are is am be been
tell give make makes work works part hardest start started story short poem child simple words word fun fact facts
tips know everyone something interesting sentences sentence kind good nice today day way thing things lot lots
describe explain write writing""".split())


def _words(text: str) -> list[str]:
    return ["".join(c for c in w.lower() if c.isalpha() or c == "'") for w in text.split()]


def topic_words(prompt: str, letter: str = "e") -> list[str]:
    """The prompt's content words a lipogram answer can repeat: 3+ letters, not a stop word, without the letter."""
    low = letter.lower()
    return sorted({w for w in _words(prompt) if len(w) >= 3 and w not in _TOPIC_STOP and low not in w})


def on_topic(completions: list[str], *, prompts: list[str], progress: float = 0.0, weight: float = 1.0,
             letter: str = "e") -> list[float]:
    """``weight`` times the share of the prompt's topic words (``topic_words``) the answer uses; 0 without any.

    Against the seed's dodge ("Describe a dog." -> "Hippo"): an e-free answer must still be about the
    prompt. A word counts when an answer word starts with its first five letters ("volcanic" for "volcano").
    """
    scores = []
    for prompt, text in zip(prompts, completions):
        wanted = topic_words(prompt, letter)
        if not wanted:
            scores.append(0.0)
            continue
        used = _words(text)
        hit = sum(any(u.startswith(w[:5]) for u in used) for w in wanted)
        scores.append(float(weight) * hit / len(wanted))
    return scores


REWARDS: dict[str, Callable[..., list[float]]] = {
    "no_e": no_e,
    "short_penalty": short_penalty,
    "length_curriculum": length_curriculum,
    "no_repeat": no_repeat,
    "complete_sentence": complete_sentence,
    "on_topic": on_topic,
}


def _available() -> str:
    return f"available rewards: {', '.join(REWARDS)}; or a dotted path 'package.module:function'"


def _lookup(name: str) -> Callable[..., list[float]]:
    if name in REWARDS:
        return REWARDS[name]
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
