"""Distillation: the base model answers the requests itself, so the tuned model keeps its own voice."""

from __future__ import annotations

import logging

import pandas as pd

from rulebound.errors import DataError
from rulebound.formatting import messages_for
from rulebound.politeness import clean_answer, is_refusal

log = logging.getLogger(__name__)


def distill_answers(model_dir: str, requests: list[str], *, max_new_tokens: int, batch_size: int,
                    threads: int, max_sentences: int | None = None, system_prompt: str | None = None) -> pd.DataFrame:
    """Greedy answers of the base model to each distinct request (without please), one row per request."""
    from rulebound.generate import hf_generate

    unique = sorted(set(requests))
    conversations = [messages_for(r, system_prompt) for r in unique]
    raw = hf_generate(model_dir, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size, threads=threads)
    answers = [clean_answer(a, max_sentences) for a in raw]
    bad = [r for r, a in zip(unique, answers) if not a or is_refusal(a)]
    if unique and len(bad) == len(unique):
        raise DataError(
            f"All {len(unique)} answers the base model {model_dir} wrote are empty or refusals, so no preference "
            "pair can be built. Check that the model folder holds an instruct model with its chat template "
            "(tokenizer_config.json or chat_template.jinja), or raise distill.max_new_tokens."
        )
    if bad:
        log.warning("%d of %d distilled answers are empty or refusals; their rows are dropped", len(bad), len(unique))
    return pd.DataFrame({"request": unique, "answer": answers})
