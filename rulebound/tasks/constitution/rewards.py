"""The GRPO reward made from a constitution's checkers (``rewards: [constitution]`` in a GRPO run).

The task fills in the experiment's own rules (``ConstitutionTask.runs``), so a config names it alone. The
reward sees the user's last turn of each prompt (what GRPO hands a reward), so a rule whose earlier turns
count is judged on the last turn here; the evaluation judges whole chats.
"""

from __future__ import annotations

from rulebound.errors import ConfigError
from rulebound.tasks.constitution.spec import complies, parse_rules


def constitution(completions: list[str], *, prompts: list[str], progress: float = 0.0, rules: list | None = None,
                 reward: float = 1.0, penalty: float = -1.0) -> list[float]:
    """``reward`` for a completion that complies with the rules (the deciding rule's checker, or a normal
    answer where none applies), ``penalty`` otherwise."""
    parsed, problems = parse_rules(list(rules or []), "constitution reward: rules")
    if problems:
        raise ConfigError("; ".join(problems))
    return [float(reward) if complies(parsed, [{"role": "user", "content": p}], c) else float(penalty)
            for p, c in zip(prompts, completions)]


REWARDS = {"constitution": constitution}
