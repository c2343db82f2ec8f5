"""One evaluated artifact: an HF folder (with an optional PEFT adapter) or a GGUF (with an optional LoRA GGUF).

This is the single place where the HF-or-GGUF fork is made. Tasks ask a ``ModelRef`` to generate replies
or to score answers; the rule that built the inputs decided which kind of artifact it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from rulebound.errors import RuleboundError

KEYS = ("model", "adapter", "gguf", "lora")


@dataclass(frozen=True)
class ModelRef:
    model: str | None = None  # HF folder
    adapter: str | None = None  # PEFT adapter folder, applied on ``model``
    gguf: str | None = None  # GGUF file
    lora: str | None = None  # LoRA GGUF, applied on ``gguf``

    def __post_init__(self) -> None:
        if bool(self.model) == bool(self.gguf):
            raise RuleboundError(f"A model reference is an HF folder or a GGUF file, exactly one: got {self}.")
        if self.adapter and not self.model:
            raise RuleboundError(f"A PEFT adapter ({self.adapter}) needs an HF folder to apply on.")
        if self.lora and not self.gguf:
            raise RuleboundError(f"A LoRA GGUF ({self.lora}) needs a GGUF file to apply on.")

    @classmethod
    def from_inputs(cls, inputs: Mapping) -> "ModelRef":
        """From a rule's named inputs (``model``/``adapter`` or ``gguf``/``lora``; other names are ignored)."""
        return cls(**{k: str(inputs[k]) for k in KEYS if inputs.get(k)})

    @property
    def is_gguf(self) -> bool:
        return self.gguf is not None

    def __str__(self) -> str:
        if self.is_gguf:
            return self.gguf + (f" + LoRA {self.lora}" if self.lora else "")
        return self.model + (f" + adapter {self.adapter}" if self.adapter else "")

    def generate(self, conversations: list[list[dict]], *, max_new_tokens: int, batch_size: int = 16,
                 n_ctx: int = 1024, threads: int | None = None, system_prompt: str | None = None,
                 constraint=None) -> list[str]:
        """Greedy replies to each conversation with the artifact's own chat template (``rulebound.generate``)."""
        from rulebound.generate import gguf_generate, hf_generate, with_system

        conversations = with_system(conversations, system_prompt)
        if self.is_gguf:
            return gguf_generate(self.gguf, conversations, max_new_tokens=max_new_tokens, n_ctx=n_ctx,
                                 threads=threads, lora_path=self.lora, constraint=constraint)
        return hf_generate(self.model, conversations, adapter_dir=self.adapter, max_new_tokens=max_new_tokens,
                           batch_size=batch_size, threads=threads, constraint=constraint)

    def preference_scores(self, pairs: pd.DataFrame, *, variant: str, batch_size: int = 8, n_ctx: int = 1024,
                          threads: int | None = None) -> pd.DataFrame:
        """Mean answer log-probabilities of every pair's chosen and rejected answer (``rulebound.preference_eval``)."""
        from rulebound.preference_eval import preference_scores_gguf, preference_scores_hf

        if self.is_gguf:
            return preference_scores_gguf(self.gguf, pairs, n_ctx=n_ctx, lora_path=self.lora, variant=variant,
                                          threads=threads)
        return preference_scores_hf(self.model, pairs, adapter_dir=self.adapter, batch_size=batch_size,
                                    variant=variant, threads=threads)
