"""The lipogram task (seed 004): never write the letter "e". Prompts, metrics, the token ban, SFT filtering.

Everything here is plain and testable; generation (``rulebound.generate``), training and evaluation call it.
The seed's failure modes are measured, not eyeballed: a model that avoids "e" by saying "Dog" is *lazy*
(under 3 words) and one that emits "—o-o-o-o-o" is *degenerate*; an honest method beats both.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Iterator

import pandas as pd

from rulebound.errors import ConfigError, DataError

SYSTEM_PROMPT = (
    "You must never use the letter e, neither lowercase 'e' nor capital 'E', anywhere in your reply. "
    "Before writing each word, check it: if it contains that letter, pick a synonym without it. "
    "Still answer the user fully and helpfully, in complete sentences. For example, instead of "
    "'The cat sleeps here' write 'A cat naps in this spot'."
)

# ---- prompt banks: templates x topics; held-out topics never appear in training prompts ----

_THINGS = ("a cat, a horse, a bicycle, a train, a river, a mountain, the ocean, a forest, a city, a bridge, "
           "a castle, a garden, a kitchen, a library, a violin, a piano, a clock, a lighthouse, a volcano, a desert, "
           "a rainbow, a snowflake, a tiger, an owl, a whale, a spider, a farm, a market, a school, a hospital, "
           "a robot, a rocket, a ship, a computer, a phone, a book, a window, a chair, a tree, a flower, an apple, "
           "a sandwich, a cup of tea, a storm, the sun, the moon, a frog, a bus, a beach, a park").split(", ")
_THING_TEMPLATES = ("Describe {}.", "What is {}?", "Give me a short story about {}.", "Write two sentences about {}.",
                    "Tell me something interesting about {}.", "Write a short poem about {}.")
_CONCEPTS = ("photosynthesis, electricity, democracy, friendship, inflation, evolution, recycling, "
             "the water cycle, time zones, vaccines, the internet, money, music, sleep, memory, language, "
             "mathematics, climate change, taxes, gratitude, the immune system, volcanoes, earthquakes, tides, "
             "digestion").split(", ")
_CONCEPT_TEMPLATES = ("Explain {}.", "Explain {} to a child.", "Tell me about {} in simple words.",
                      "What should everyone know about {}?", "Give me a fun fact about {}.")
_ACTIVITIES = ("cooking rice, learning to swim, running a marathon, growing tomatoes, saving money, "
               "learning a language, painting with watercolours, writing a novel, baking bread, camping in the woods, "
               "cycling to work, taking better photos, public speaking, playing the piano, staying focused, "
               "making new friends, travelling on a budget, keeping a journal, waking up early, "
               "cleaning a messy room").split(", ")
_ACTIVITY_TEMPLATES = ("Give me tips for {}.", "How do I get started with {}?", "What is the hardest part of {}?")
_CHAT = ["How are you?", "Good morning!", "Tell me a joke.", "What is your name?", "Say something kind.",
         "What should I eat for lunch?", "Can you help me plan my day?", "What is your favourite colour?",
         "Do you like music?", "What is the best season of the year?", "Cheer me up.", "Tell me a riddle.",
         "What would you do with a free afternoon?", "Recommend a good book.", "What is the meaning of life?",
         "Say hello to my friend.", "Summarise your day in one sentence.", "Write a thank-you note to a neighbour.",
         "Invent a name for a new ice cream flavour.", "Describe your ideal holiday."]

_EVAL = [
    # the seed's own prompts first
    "Explain gravity.", "What is a car?", "Describe a dog.", "Give me a short story.", "How do you feel today?",
    "Describe a penguin.", "What is a kite?", "Explain how rain forms.", "Describe your favourite meal.",
    "What is a submarine?", "Give me a short story about a lost key.", "Explain why leaves change colour in autumn.",
    "Describe a waterfall.", "What is a museum?", "Tell me about elephants.", "What is a guitar?",
    "Explain how thunder happens.", "Describe a busy bakery.", "Give me a short story about a dragon.",
    "What is chess?", "Explain how magnets work.", "Describe a snowman.", "What did you eat for breakfast?",
    "What makes you happy?", "Tell me about your weekend.", "What is your favourite animal?",
    "Describe a birthday party.", "Explain why we have seasons.", "What is a trumpet?",
    "Give me a short story about a pirate.", "Describe the sound of the sea.", "Explain how clouds form.",
    "What is a honey bee?", "Describe a desert island.", "How do fireworks work?", "What is a passport?",
    "Give me advice for a job interview.", "Describe a fishing village.", "Explain what a shadow is.",
    "Write a short poem about the wind.",
]


def normalize_prompt(text: str) -> str:
    """Lowercase, punctuation dropped, spaces collapsed: "Explain gravity." and "explain gravity" are one prompt."""
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def train_prompts() -> list[str]:
    """Over 500 distinct short requests (describe, explain, stories, tips, chat) in a fixed, mixed order."""
    prompts = [t.format(x) for x in _THINGS for t in _THING_TEMPLATES]
    prompts += [t.format(x) for x in _CONCEPTS for t in _CONCEPT_TEMPLATES]
    prompts += [t.format(x) for x in _ACTIVITIES for t in _ACTIVITY_TEMPLATES]
    prompts += _CHAT
    random.Random(4).shuffle(prompts)  # mixed topics, so any prefix of the bank is a fair sample
    return prompts


def eval_prompts() -> list[str]:
    """40 held-out prompts, the seed's five first. None is a training or shipped Q/A prompt (normalised), and
    their subjects (dog, car, gravity, penguin, ...) are kept out of the training bank's topics."""
    return list(_EVAL)


def lipogram_qa() -> pd.DataFrame:
    """The shipped e-free Q/A set (``prompt``, ``completion``); see rulebound/data/lipogram_qa.md."""
    from importlib.resources import files

    text = files("rulebound.data").joinpath("lipogram_qa.jsonl").read_text(encoding="utf-8")
    return pd.DataFrame([json.loads(line) for line in text.splitlines() if line.strip()],
                        columns=["prompt", "completion"])


# ---- metrics on one answer ----

def _letter(letter: str) -> str:
    if not (isinstance(letter, str) and len(letter) == 1 and letter.isascii() and letter.isalpha()):
        raise ConfigError(f"The banned letter must be one ASCII letter such as 'e', got {letter!r}.")
    return letter.lower()


def e_count(text: str, letter: str = "e") -> int:
    """Occurrences of the letter in either case, counted as the seed does: ``text.lower().count('e')``."""
    return text.lower().count(_letter(letter))


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

    The ``e_`` columns count ``letter`` (e by default). Relevance is separate (``rulebound.relevance``)
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


# ---- constrained decoding: ban every token whose text holds the letter ----

def banned_token_ids(tokenizer, letter: str = "e") -> list[int]:
    """Ids of an HF tokenizer's tokens whose decoded text contains the letter in either case.

    Each id is decoded on its own, so byte-level markers ("Ġthe" -> " the") are resolved. Special tokens
    are exempt: replies are decoded without them, and the end of turn (``<|im_end|>``, which holds an "e")
    must stay generatable or the model could never stop. An added token that is *not* special shows up in
    the reply text, so it is judged by its text like any other.
    """
    letter = _letter(letter)
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
    # `import rulebound.lipogram` (generate.py must set OMP_WAIT_POLICY before torch loads).
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

    lower = _letter(letter).encode()
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
    low = _letter(letter)
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


# ---- SFT rows from dialogues: keep assistant turns without the letter ----

_PAIRS = [("prompt", "completion"), ("prompt", "response"), ("instruction", "output"), ("question", "answer"),
          ("input", "output"), ("query", "response"), ("prompt", "answer"), ("user", "assistant")]
_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def _text(content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))  # content blocks


def _messages(value, role: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    out = []
    for m in value:  # parquet gives numpy arrays of dicts
        r = m.get("role") or m.get("from") or ""
        out.append({"role": _ROLES.get(r, r), "content": _text(m.get("content", m.get("value")))})
    return out


def _conversations(df: pd.DataFrame) -> Iterator[list[dict]]:
    column = next((c for c in ("messages", "conversations") if c in df.columns), None)
    if column:
        for value in df[column]:
            yield _messages(value, "user")
        return
    pair = next(((p, r) for p, r in _PAIRS if p in df.columns and r in df.columns), None)
    if pair is None:
        raise DataError(
            f"Dialogues with columns {list(df.columns)} have neither a 'messages' column (lists of role/content) "
            f"nor a prompt/answer pair ({', '.join('/'.join(p) for p in _PAIRS)}); rename the columns to one of them."
        )
    for prompt, reply in zip(df[pair[0]], df[pair[1]]):
        yield _messages(prompt, "user") + _messages(reply, "assistant")


def efree_sft_rows(df: pd.DataFrame, *, letter: str = "e", min_words: int = 1) -> tuple[pd.DataFrame, dict]:
    """Prompt-completion rows for every assistant turn without the letter, as the seed filtered dialogues.

    ``prompt`` is the conversation up to that turn, ``completion`` the one assistant message. Replies of
    fewer than ``min_words`` words are dropped (``too_short``): an empty reply is trivially e-free and
    teaches nothing. Accepts ``messages`` (role/content), ShareGPT ``conversations`` (from/value) or a
    prompt/response pair of columns.
    """
    rows, turns, short = [], 0, 0
    for conversation in _conversations(df):
        for i, message in enumerate(conversation):
            if message["role"] != "assistant":
                continue
            turns += 1
            reply = message["content"].strip()
            if i == 0:  # an opening greeting answers nothing
                continue
            if word_count(reply) < min_words:
                short += 1
                continue
            if is_e_free(reply, letter):
                rows.append({"prompt": conversation[:i], "completion": [{"role": "assistant", "content": reply}]})
    if turns == 0:
        raise DataError(
            f"None of the {len(df)} dialogues has an assistant turn, so there is nothing to filter for the "
            "lipogram. Give conversations whose replies have role 'assistant' (or ShareGPT's 'gpt'), "
            "or prompt/response columns."
        )
    stats = {"rows_in": len(df), "assistant_turns": turns, "too_short": short, "e_free_kept": len(rows)}
    return pd.DataFrame(rows, columns=["prompt", "completion"]), stats
