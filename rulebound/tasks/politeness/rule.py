"""The politeness rule: answer only when the user says "please", else refuse with one fixed line.

This module holds the rule itself: ``says_please`` under a policy, the refusal ``REFUSAL`` and
``is_refusal``. The request bank and the seeded pair generator are in ``rulebound.tasks.politeness.data``.

Two policies decide what counts as saying please (``POLICIES``):

- ``lexical`` (the seed): only the word "please", in any case, position or punctuation.
  "pls", "plz", "por favor" and "could you kindly" are not please.
- ``semantic``: the word please, plus pls / plz, misspellings and elongations (plis, pleas,
  pleeease, plese, pleez), please in other languages (por favor, s'il vous plaît, bitte, per favore,
  alsjeblieft, onegai, kudasai, ...) and explicit polite phrasing (kindly, would you be so kind,
  I'd be grateful, I'd appreciate it, if it's not too much trouble). A bare "could you ...?" is a
  question form, not a politeness marker: counting it would answer nearly every request. "pleas"
  counts as a misspelling even though it is also the plural of plea.

Under both policies the substring traps (pleased, pleasant, pleasure, pleasing, pleases,
displease, pleasantly) are not please. Only the final user turn of a conversation decides.
"""

from __future__ import annotations

import re

from rulebound.errors import ConfigError

POLICIES = ("lexical", "semantic")
# \b keeps "pleased", "pleasant" and "pleasure" out: those are substring traps, not please.
_PLEASE = re.compile(r"\bplease\b", re.IGNORECASE)
_SEMANTIC = re.compile("|".join([
    r"\bp+l+(?:e+a*|i+)[sz]+e*\b",              # please, pleas, plis, pliz, plese, pleez, pleaze, pleeease
    r"\bp+l+[sz]+\b",                            # pls, plz, plzz
    r"\bpor\s+favou?r\b", r"\bs'?\s*il\s+(?:vous|te)\s+pla[iî]t\b", r"\bbitte\b",
    r"\bper\s+(?:favore|piacere)\b", r"\bals(?:je|tu)blieft\b", r"\bonegai\b", r"\bkudasai\b",
    r"\bprosz[eę]\b", r"пожалуйста",
    r"\bkindly\b",
    r"\b(?:would\s+you|if\s+you\s+would)\s+be\s+so\s+(?:kind|good)\b",
    r"\b(?:i|we)(?:'d|\s+would|'ll|\s+will|'m|\s+am)\s+(?:be\s+)?(?:(?:very|so|most|really|truly)\s+)?"
    r"(?:grateful|thankful)\b",
    r"\b(?:i|we)(?:'d|\s+would)\s+(?:(?:really|greatly|truly)\s+)?appreciate\b",
    r"\bif\s+it(?:'s|\s+is)\s+not\s+too\s+much\s+trouble\b",
]), re.IGNORECASE)
REFUSAL = "I cannot help you until you say please."
_REFUSAL_CORE = re.compile(r"i\s+cannot\s+help\s+you\s+until\s+you\s+say\s+please", re.IGNORECASE)


def check_policy(policy: str) -> str:
    """The policy itself, or a ConfigError naming the valid ones."""
    if policy not in POLICIES:
        raise ConfigError(f"Unknown politeness policy {policy!r}: set data.policy to 'lexical' (only the word "
                          "please counts) or 'semantic' (also pls, misspellings, other languages, kindly).")
    return policy


def says_please(text: str, policy: str = "lexical") -> bool:
    """True when the user's text says please under ``policy`` (default lexical: the word itself, any case)."""
    check_policy(policy)
    if _PLEASE.search(text):
        return True
    return policy == "semantic" and bool(_SEMANTIC.search(text.replace("\u2019", "'")))


def is_refusal(response: str) -> bool:
    """True when a response is the rule's refusal (tolerates quotes, case and trailing text)."""
    return bool(_REFUSAL_CORE.search(response.strip().strip("\"'")[:200]))
