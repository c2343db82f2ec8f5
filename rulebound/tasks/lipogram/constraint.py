"""Constrained decoding for the lipogram: ban every token whose text holds the letter, on transformers and
on llama.cpp. ``LetterBan(letter)`` is what the lipogram hands to generation (``rulebound.generate.Constraint``).
"""

from __future__ import annotations

import logging

from rulebound.errors import ConfigError
from rulebound.tasks.lipogram.rule import check_letter

log = logging.getLogger(__name__)


def banned_token_ids(tokenizer, letter: str = "e") -> list[int]:
    """Ids of an HF tokenizer's tokens whose decoded text contains the letter in either case.

    Each id is decoded on its own, so byte-level markers ("Ġthe" -> " the") are resolved. Special tokens
    are exempt: replies are decoded without them, and the end of turn (``<|im_end|>``, which holds an "e")
    must stay generatable or the model could never stop. An added token that is *not* special shows up in
    the reply text, so it is judged by its text like any other.
    """
    letter = check_letter(letter)
    exempt = set(tokenizer.all_special_ids)
    exempt |= {i for i, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    eos = tokenizer.eos_token_id
    exempt |= set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                   clean_up_tokenization_spaces=False)
    return [i for i, text in enumerate(texts) if i not in exempt and letter in text.lower()]


def _ban_tokens_class():
    import torch
    from transformers import LogitsProcessor

    class BanTokens(LogitsProcessor):
        """HF logits processor: banned ids get -inf, so neither greedy nor sampled decoding picks them."""

        def __init__(self, ids):
            self.ids = torch.as_tensor(sorted(set(int(i) for i in ids)), dtype=torch.long)

        def __call__(self, input_ids, scores):
            ids = self.ids.to(scores.device)
            return scores.index_fill(-1, ids[ids < scores.shape[-1]], float("-inf"))

    return BanTokens


def __getattr__(name: str):
    # BanTokens subclasses transformers' LogitsProcessor; building it on first use keeps torch out of
    # `import rulebound.tasks.lipogram.constraint` (generate.py must set OMP_WAIT_POLICY before torch loads).
    if name == "BanTokens":
        globals()["BanTokens"] = cls = _ban_tokens_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gguf_banned_token_ids(llm, letter: str = "e") -> list[int]:
    """Ids of a llama.cpp model's tokens whose text, from the GGUF's own vocab, contains the letter.

    Bytes are tested (the letter is ASCII, so a partial UTF-8 piece can never hide it). Control tokens
    (end of turn included) render no text and are exempt; so is every end-of-generation token.
    """
    import llama_cpp

    lower = check_letter(letter).encode()
    upper = lower.upper()
    vocab = llm._model.vocab  # llama-cpp-python keeps the model handle private; the C API needs it
    ids = []
    for i in range(llm.n_vocab()):
        if llama_cpp.llama_vocab_is_control(vocab, i) or llama_cpp.llama_vocab_is_eog(vocab, i):
            continue
        piece = llm.detokenize([i], special=False)
        if lower in piece or upper in piece:
            ids.append(i)
    return ids


def letter_grammar(letter: str = "e") -> str:
    """A GBNF grammar (llama.cpp's) for text without the letter in either case.

    llama.cpp rejects every token whose text would break it, so the ban travels with the GGUF to any
    llama.cpp front end: ``llama-cli -m model.gguf --grammar-file no-e.gbnf``, ``llama-server``'s
    ``grammar`` field, or ``Llama(...)(grammar=LlamaGrammar.from_string(...))`` in Python.
    """
    low = check_letter(letter)
    return f"# text without the letter {low!r} (either case): the lipogram constraint\nroot ::= [^{low}{low.upper()}]*\n"


def llama_ban_kwargs(llm, letter: str = "e", method: str = "grammar") -> dict:
    """Keyword arguments for ``Llama.create_chat_completion`` / ``Llama.__call__`` that ban the letter.

    ``grammar`` (the default): ``letter_grammar`` in llama.cpp's own sampler, the form a user of the exported
    GGUF can pass to any llama.cpp front end. ``processor``: a vectorised ``logits_processor`` over the
    banned ids, about 1.5x faster on this CPU, the same greedy answers (a test checks), but Python-only.
    Not ``logit_bias``: llama-cpp-python applies it through a Python loop over ~25k entries per token.
    """
    if method == "grammar":
        from llama_cpp import LlamaGrammar

        return {"grammar": LlamaGrammar.from_string(letter_grammar(letter), verbose=False)}
    if method != "processor":
        raise ConfigError(f"letter ban method must be 'grammar' or 'processor', got {method!r}")
    import numpy as np
    from llama_cpp import LogitsProcessorList

    banned = np.asarray(gguf_banned_token_ids(llm, letter), dtype=np.intp)

    def ban(input_ids, scores):
        scores[banned] = -np.inf
        return scores

    return {"logits_processor": LogitsProcessorList([ban])}


class LetterBan:
    """The ban as a generation constraint: a logits processor on transformers, the GBNF grammar on llama.cpp."""

    def __init__(self, letter: str = "e", llama_method: str = "grammar") -> None:
        self.letter = check_letter(letter)
        self.llama_method = llama_method

    def hf_logits_processor(self, tokenizer):
        from rulebound.tasks.lipogram.constraint import BanTokens

        ids = banned_token_ids(tokenizer, self.letter)
        log.info("constrained decoding: %d of %d tokens contain %r and are banned", len(ids), len(tokenizer),
                 self.letter)
        return BanTokens(ids)

    def llama_kwargs(self, llm) -> dict:
        return llama_ban_kwargs(llm, self.letter, self.llama_method)
