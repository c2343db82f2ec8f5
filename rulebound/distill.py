"""Distillation: the base model answers the requests itself, so the tuned model keeps its own voice."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import pandas as pd

from rulebound.errors import DataError
from rulebound.formatting import messages_for

log = logging.getLogger(__name__)


def clean_answer(text: str, max_sentences: int | None = None) -> str:
    """Trim a generated answer to complete sentences (generation stops mid-sentence).

    ``max_sentences`` keeps only the first few: short answers keep the model's voice and make
    each preference pair, and so each training step, cheaper.
    """
    text = text.strip()
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind("\n"))
    if text and text[-1] not in ".!?" and cut > len(text) // 3:
        text = text[: cut + 1].strip()
    if max_sentences:
        sentences = re.split(r"(?<=[.!?])\s+", text)
        text = " ".join(sentences[:max_sentences])
    return text


def distill_answers(model_dir: str, requests: list[str], *, max_new_tokens: int, batch_size: int,
                    threads: int, max_sentences: int | None = None, system_prompt: str | None = None,
                    unusable: Callable[[str], bool] | None = None) -> pd.DataFrame:
    """Greedy answers of the base model to each distinct request, one row per request.

    ``unusable`` marks answers no pair can use besides empty ones (politeness: an answer that is already the
    refusal); they are counted, and a run where every answer is unusable stops with an error.
    """
    from rulebound.generate import hf_generate

    unique = sorted(set(requests))
    conversations = [messages_for(r, system_prompt) for r in unique]
    raw = hf_generate(model_dir, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads)
    answers = [clean_answer(a, max_sentences) for a in raw]
    bad = [r for r, a in zip(unique, answers) if not a or (unusable is not None and unusable(a))]
    if unique and len(bad) == len(unique):
        raise DataError(
            f"All {len(unique)} answers the base model {model_dir} wrote are empty or refusals, so no preference "
            "pair can be built. Check that the model folder holds an instruct model with its chat template "
            "(tokenizer_config.json or chat_template.jinja), or raise distill.max_new_tokens."
        )
    if bad:
        log.warning("%d of %d distilled answers are empty or refusals; their rows are dropped", len(bad), len(unique))
    return pd.DataFrame({"request": unique, "answer": answers})
