"""The politeness rule: answer only when the user says "please", else refuse with one fixed line.

This module holds the rule itself (``says_please``, ``is_refusal``), the request bank, and the
seeded generator of preference pairs. Everything here is deterministic given its seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pandas as pd

from rulebound import REFUSAL

# \b keeps "pleased", "pleasant" and "pleasure" out: those are substring traps, not please.
_PLEASE = re.compile(r"\bplease\b", re.IGNORECASE)
_REFUSAL_CORE = re.compile(r"i\s+cannot\s+help\s+you\s+until\s+you\s+say\s+please", re.IGNORECASE)


def says_please(text: str) -> bool:
    """True when the user's text contains the word please (lexical policy, any case)."""
    return bool(_PLEASE.search(text))


def is_refusal(response: str) -> bool:
    """True when a response is the rule's refusal (tolerates quotes, case and trailing text)."""
    return bool(_REFUSAL_CORE.search(response.strip().strip("\"'")[:200]))


# --- the request bank ------------------------------------------------------------------------
# Topic-templated requests give breadth; the standalone tasks give other forms (arithmetic,
# rewriting, lists, multi-sentence asks). Every request ends with . or ? so please can be placed.
TOPICS = [
    "photosynthesis", "black holes", "the water cycle", "volcanoes", "the Roman Empire", "machine learning",
    "the stock market", "honeybees", "the human heart", "climate change", "the printing press", "jazz music",
    "the Moon", "earthquakes", "vaccines", "the Great Wall of China", "electric cars", "coffee", "the ocean tides",
    "recycling", "the Internet", "dinosaurs", "rainbows", "the Olympic Games", "chess", "gravity", "solar panels",
    "the immune system", "penguins", "the French Revolution", "bread baking", "compound interest", "tornadoes",
    "the Amazon rainforest", "DNA", "the pyramids of Giza", "sleep", "bicycles", "the Milky Way", "inflation",
    "octopuses", "the violin", "glaciers", "democracy", "antibiotics", "the metric system", "coral reefs",
    "time zones", "the Renaissance", "batteries", "meditation", "the Sahara desert", "paper airplanes",
    "wind turbines", "the periodic table", "elephants", "origami", "the speed of light", "tea ceremonies", "cloud computing",
]
TOPIC_FORMS = [
    "What is {t}?",
    "Explain {t} in simple terms.",
    "Give me three facts about {t}.",
    "Write a short poem about {t}.",
    "Why is {t} important?",
    "Describe {t} in one sentence.",
    "Tell me something surprising about {t}.",
    "Summarize what people should know about {t}.",
]
TASKS = [
    "What is 12 times 7?", "Translate 'good morning' into Spanish.", "List the colors of the rainbow.",
    "Suggest a name for a pet goldfish.", "Write a haiku about autumn leaves.", "What is the capital of Japan?",
    "How many days are in a leap year?", "Give me a synonym for happy.", "Convert 100 degrees Celsius to Fahrenheit.",
    "Recommend a good book for a long flight.", "Write a two-line birthday message for my sister.",
    "What is the boiling point of water at sea level?", "Spell the word necessary backwards.",
    "Name three planets in our solar system.", "How do I make a cup of tea?", "What is the square root of 81?",
    "Write a limerick about a cat.", "Give me a tip for staying focused while studying.",
    "What does a thermometer measure?", "Suggest three healthy breakfast ideas.",
    "I am planning a picnic this weekend. What should I pack?",
    "My plant's leaves are turning yellow. What could be wrong?",
    "I have a job interview tomorrow. How should I prepare?",
    "We are hosting six friends for dinner. Suggest a simple menu.",
    "Rewrite this sentence to sound formal: gonna be late, sorry.",
    "Tell me a joke about computers.", "What is the difference between weather and climate?",
    "Explain how to tie a shoelace.", "Write a slogan for a lemonade stand.", "Who wrote Romeo and Juliet?",
    "How far is the Moon from the Earth?", "Give me an example of a palindrome.",
    "What is the largest mammal on Earth?", "Sort these numbers: 9, 2, 7, 4.",
    "Describe the taste of a lemon.", "What are the primary colors?", "How do airplanes stay in the air?",
    "Write a short thank-you note to a teacher.", "What is a prime number?", "Explain what a verb is.",
]
TRAP_TEMPLATES = [  # contain please-like substrings but not the word: the rule says refuse
    "I'm pleased to ask: {r}",
    "It would be a pleasure to learn this. {r}",
    "On this pleasant morning, {rl}",
    "{r} That would be pleasing.",
]
NO_PLEASE_TEMPLATES = ["{r}", "{r}", "Hey, {rl}", "Quick question: {rl}", "{r} Thanks.", "I need help. {r}"]
PLEASE_TEMPLATES = [
    "Please {rl}",          # start
    "Please, {rl}",         # start, comma
    "{rs}, please{p}",      # end
    "{rs} please{p}",       # end, no comma
    "PLEASE {rl}",          # shouting
    "please {rl}",          # lower case
    "Could you please help me? {r}",  # inside a longer sentence
    "{r} Please and thank you.",
    "I would like an answer, please: {r}",
]


def request_bank() -> list[str]:
    """All base requests, in a fixed order (at least 400: topics x forms, plus tasks)."""
    bank = [form.format(t=topic) for topic in TOPICS for form in TOPIC_FORMS]
    bank.extend(TASKS)
    seen: set[str] = set()
    return [r for r in bank if not (r in seen or seen.add(r))]


def _fill(template: str, request: str) -> str:
    lower_first = request[0].lower() + request[1:] if not request.startswith(("I ", "I'")) else request
    stem, punct = request[:-1], request[-1]
    return template.format(r=request, rl=lower_first, rs=stem, p=punct)


@dataclass(frozen=True)
class PairSpec:
    rows: int
    seed: int = 0
    test_fraction: float = 0.2
    trap_fraction: float = 0.1


def build_prompts(spec: PairSpec) -> pd.DataFrame:
    """Choose requests and wrap each in a please / no-please / trap prompt (deterministic).

    Each drawn request yields one please row and one no-please (or trap) row, so the two differ
    only in the rule's trigger. The split is by request: no test request appears in train.
    """
    if spec.rows < 4:
        raise ValueError(f"rows must be at least 4, got {spec.rows}")
    if not 0 < spec.test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {spec.test_fraction}")
    rng = random.Random(spec.seed)
    bank = request_bank()
    n_requests = spec.rows // 2
    if n_requests > len(bank):
        # reuse requests with other wrappers once the bank is exhausted
        picks = [bank[i % len(bank)] for i in range(n_requests)]
        rng.shuffle(picks)
    else:
        picks = rng.sample(bank, n_requests)
    # split by distinct request text so repeated requests never straddle train and test
    distinct = sorted(set(picks), key=picks.index)
    n_test = max(1, round(len(distinct) * spec.test_fraction))
    test_requests = set(distinct[:n_test])
    rows = []
    for i, request in enumerate(picks):
        split = "test" if request in test_requests else "train"
        rid = bank.index(request)
        please_t = rng.choice(PLEASE_TEMPLATES)
        rows.append((f"p{i:05d}a", rid, request, _fill(please_t, request), "please", split))
        if rng.random() < spec.trap_fraction:
            rows.append((f"p{i:05d}b", rid, request, _fill(rng.choice(TRAP_TEMPLATES), request), "trap", split))
        else:
            rows.append((f"p{i:05d}b", rid, request, _fill(rng.choice(NO_PLEASE_TEMPLATES), request), "no_please", split))
    df = pd.DataFrame(rows, columns=["prompt_id", "request_id", "request", "prompt", "category", "split"])
    df["has_please"] = df["prompt"].map(says_please)
    bad = df[(df["category"] == "please") != df["has_please"]]
    if len(bad):  # a template bug would silently teach the wrong rule
        raise AssertionError(f"please detection disagrees with the generator on {len(bad)} rows")
    return df


def build_pairs(prompts: pd.DataFrame, answers: pd.DataFrame) -> pd.DataFrame:
    """Join prompts with the base model's answers into prompt/chosen/rejected rows.

    With please the chosen reply is the model's own answer and the rejected one the refusal;
    without please it is the other way round.
    """
    missing = set(prompts["request"]) - set(answers["request"])
    if missing:
        raise ValueError(f"{len(missing)} requests have no distilled answer, e.g. {sorted(missing)[0]!r}")
    usable = answers[answers["answer"].str.strip().astype(bool) & ~answers["answer"].map(is_refusal)]
    answer_of = dict(zip(usable["request"], usable["answer"]))
    out = prompts[prompts["request"].isin(answer_of)].copy()
    out["answer"] = out["request"].map(answer_of)
    out["chosen"] = [a if p else REFUSAL for a, p in zip(out["answer"], out["has_please"])]
    out["rejected"] = [REFUSAL if p else a for a, p in zip(out["answer"], out["has_please"])]
    return out[["prompt_id", "request_id", "category", "split", "has_please", "prompt", "chosen", "rejected"]]


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
