"""The lipogram's GRPO rewards: the seed's e-count reward and ``on_topic`` (stay on the prompt's subject)."""

from __future__ import annotations

from rulebound.errors import ConfigError


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


REWARDS = {"no_e": no_e, "on_topic": on_topic}
