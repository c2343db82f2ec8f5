"""The lipogram rule (seed 004): never write the letter "e". Its metrics on one answer, measured, not eyeballed.

A model that avoids "e" by saying "Dog" is *lazy* (under 3 words) and one that emits "—o-o-o-o-o" is
*degenerate*; an honest method beats both. Constrained decoding is ``rulebound.tasks.lipogram.constraint``.
"""

from __future__ import annotations

import re
import string

import pandas as pd

from rulebound.errors import ConfigError, DataError


def check_letter(letter: str) -> str:
    if not (isinstance(letter, str) and len(letter) == 1 and letter.isascii() and letter.isalpha()):
        raise ConfigError(f"The banned letter must be one ASCII letter such as 'e', got {letter!r}.")
    return letter.lower()


def e_count(text: str, letter: str = "e") -> int:
    """Occurrences of the letter in either case, counted as the seed does: ``text.lower().count('e')``."""
    return text.lower().count(check_letter(letter))


def is_e_free(text: str, letter: str = "e") -> bool:
    return e_count(text, letter) == 0


def e_per_100_letters(text: str, letter: str = "e") -> float:
    """Letter density per 100 alphabetic characters (English prose: about 12 for "e"); 0.0 with no letters."""
    letters = sum(c.isalpha() for c in text)
    return 100.0 * e_count(text, letter) / letters if letters else 0.0


def word_count(text: str) -> int:
    """Whitespace tokens holding at least one letter or digit ("—" and "..." are not words)."""
    return sum(any(c.isalnum() for c in token) for token in text.split())


def is_lazy(text: str) -> bool:
    """Under 3 words: the seed's GRPO collapse ("Dog", "A") dodges the letter by saying almost nothing."""
    return word_count(text) < 3


_UNIT_LOOP = re.compile(r"(?=((\S{1,3}?)\2{3,}))")  # a 1-3 character unit, 4+ times in a row
_NUMBER = re.compile(r"[+-]?\d[\d.,:/]*%?")
_PUNCT = string.punctuation + "—–“”‘’…«»"


def _plausible_word(token: str) -> bool:
    core = token.strip(_PUNCT)
    if _NUMBER.fullmatch(core):
        return True
    if not any(c.isalpha() for c in core):
        return False
    if not any(c in "aeiouyAEIOUY" or (c.isalpha() and not c.isascii()) for c in core):
        return False
    return re.search(r"(.)\1{3,}", core) is None


def _phrase_loop(words: list[str]) -> bool:
    for n in range(1, 9):
        need = 4 if n <= 3 else 3
        for i in range(len(words) - n * need + 1):
            unit = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == unit for k in range(1, need)):
                return True
    return False


def is_degenerate(text: str) -> bool:
    """A loop or non-words, by three transparent rules (any one suffices):

    1. a 1-3 character unit holding a letter repeated 4+ times in a row over 8+ characters ("o-o-o-o-");
    2. a phrase repeated back to back: 1-3 words 4+ times ("no no no no"), or 4-8 words 3+ times;
    3. more than half of the whitespace tokens are not plausible words: no letter (numbers excepted),
       no vowel (a, e, i, o, u, y; any non-ASCII letter counts as one), or a character 4+ times in a row.
    Short clipped words ("Blu sng.", half of its tokens) are not degenerate by rule 3; they are lazy.
    """
    for match in _UNIT_LOOP.finditer(text):
        if len(match.group(1)) >= 8 and any(c.isalpha() for c in match.group(2)):
            return True
    tokens = text.split()
    words = [w for w in (t.strip(_PUNCT).lower() for t in tokens) if w]
    if _phrase_loop(words):
        return True
    return bool(tokens) and sum(not _plausible_word(t) for t in tokens) / len(tokens) > 0.5


def score_answers(prompts: list[str], answers: list[str], *, letter: str = "e") -> pd.DataFrame:
    """One row per answer: prompt, answer, e_count, e_free, e_per_100_letters, words, lazy, degenerate.

    The ``e_`` columns count ``letter`` (e by default). Relevance is separate (``rulebound.tasks.lipogram.relevance``)
    because it loads a sentence encoder.
    """
    prompts, answers = list(prompts), list(answers)
    if len(prompts) != len(answers):
        raise DataError(f"score_answers got {len(prompts)} prompts but {len(answers)} answers; pass one per prompt.")
    answers = ["" if a is None else str(a) for a in answers]
    return pd.DataFrame({
        "prompt": prompts, "answer": answers,
        "e_count": [e_count(a, letter) for a in answers],
        "e_free": [is_e_free(a, letter) for a in answers],
        "e_per_100_letters": [e_per_100_letters(a, letter) for a in answers],
        "words": [word_count(a) for a in answers],
        "lazy": [is_lazy(a) for a in answers],
        "degenerate": [is_degenerate(a) for a in answers],
    })


def summarize_lipogram(df: pd.DataFrame) -> dict:
    """Rates and means of a ``score_answers`` frame; ``clean_e_free_rate`` counts e-free, non-lazy,
    non-degenerate answers (the seed's real goal); ``relevance`` when the frame has that column."""
    n = len(df)
    nan = float("nan")
    out = {"n": n,
           "e_free_rate": float(df["e_free"].mean()) if n else nan,
           "e_per_100_letters": float(df["e_per_100_letters"].mean()) if n else nan,
           "mean_words": float(df["words"].mean()) if n else nan,
           "lazy_rate": float(df["lazy"].mean()) if n else nan,
           "degenerate_rate": float(df["degenerate"].mean()) if n else nan,
           "clean_e_free_rate": float((df["e_free"] & ~df["lazy"] & ~df["degenerate"]).mean()) if n else nan}
    if "relevance" in df.columns:
        out["relevance"] = float(df["relevance"].mean()) if n else nan
    return out
