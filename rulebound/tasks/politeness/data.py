"""Politeness data: the request bank and the seeded generator of preference pairs (deterministic given a seed).

Each drawn request becomes a please row and a no-please (or trap) row, answered by the base model's own
distilled answer or refused with ``REFUSAL``; ``label_ingested`` labels pairs read from a dataset instead.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import pandas as pd

from rulebound.tasks.politeness.rule import REFUSAL, check_policy, is_refusal, says_please

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
SEMANTIC_TEMPLATES = [  # the semantic policy's please without the word: answered under semantic only
    "{rs} pls{p}", "Pls {rl}", "Plz {rl}", "{rs}, plz{p}",                         # abbreviations
    "Plis {rl}", "{rs}, pleeease{p}", "Plese {rl}", "{rs} pleeees{p}",             # misspellings, elongations
    "Por favor, {rl}", "{rs}, s'il vous plaît{p}", "Bitte, {rl}", "{rs}, per favore{p}",  # other languages
    "Could you kindly help? {r}", "Would you be so kind as to help me? {r}",       # implied politeness
    "I'd be grateful if you could help. {r}", "Kindly answer this: {r}",
]
# Earlier exchanges of 2-turn conversations: the assistant's reply follows the rule for that turn.
EARLIER_EXCHANGES = [
    ("What is 2 plus 2?", "2 plus 2 is 4."),
    ("Name a primary color.", "Red is a primary color."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
    ("How many hours are in a day?", "A day has 24 hours."),
    ("What is frozen water called?", "Frozen water is called ice."),
    ("Give me a word that rhymes with cat.", "Hat rhymes with cat."),
    ("What comes after Monday?", "Tuesday comes after Monday."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("What do bees make?", "Bees make honey."),
    ("What is the first letter of the alphabet?", "The first letter of the alphabet is A."),
    ("Name a fruit that is yellow.", "A banana is a yellow fruit."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("What sound does a cow make?", "A cow says moo."),
]


def request_bank() -> list[str]:
    """All base requests, in a fixed order (at least 400: topics x forms, plus tasks)."""
    bank = [form.format(t=topic) for topic in TOPICS for form in TOPIC_FORMS]
    bank.extend(TASKS)
    seen: set[str] = set()
    return [r for r in bank if not (r in seen or seen.add(r))]


def fill_template(template: str, request: str) -> str:
    """A template filled with a request: {r} as is, {rl} first letter lower, {rs} without and {p} its end mark."""
    lower_first = request[0].lower() + request[1:] if not request.startswith(("I ", "I'")) else request
    stem, punct = request[:-1], request[-1]
    return template.format(r=request, rl=lower_first, rs=stem, p=punct)


ANSWER_CATEGORIES = ("please", "semantic_please")


@dataclass(frozen=True)
class PairSpec:
    """What ``build_prompts`` generates; the defaults reproduce the seed's single-turn lexical data.

    ``policy`` (config ``data.policy``) says what counts as please. Under ``semantic`` a share
    ``semantic_fraction`` of the answer rows say please with pls, por favor, kindly, ... instead.
    ``multiturn_fraction`` (config ``data.multiturn_fraction``) of the request pairs get an earlier
    user turn and assistant reply; only the final user turn decides.
    """

    rows: int
    seed: int = 0
    test_fraction: float = 0.2
    trap_fraction: float = 0.1
    policy: str = "lexical"
    multiturn_fraction: float = 0.0
    semantic_fraction: float = 0.5


def _check_spec(spec: PairSpec) -> None:
    check_policy(spec.policy)
    if spec.rows < 4:
        raise ValueError(f"rows must be at least 4, got {spec.rows}")
    if not 0 < spec.test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {spec.test_fraction}")
    for name in ("trap_fraction", "multiturn_fraction", "semantic_fraction"):
        if not 0 <= getattr(spec, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(spec, name)}")


def _pick_requests(spec: PairSpec, bank: list[str], rng: random.Random) -> list[str]:
    n_requests = spec.rows // 2
    if n_requests <= len(bank):
        return rng.sample(bank, n_requests)
    # reuse requests with other wrappers once the bank is exhausted
    picks = [bank[i % len(bank)] for i in range(n_requests)]
    rng.shuffle(picks)
    return picks


def _history(rng: random.Random) -> list[dict]:
    """An earlier user turn and the reply the rule gives it: an answer with please, else the refusal."""
    question, answer = rng.choice(EARLIER_EXCHANGES)
    if rng.random() < 0.5:
        return [{"role": "user", "content": fill_template(rng.choice(PLEASE_TEMPLATES), question)},
                {"role": "assistant", "content": answer}]
    return [{"role": "user", "content": fill_template(rng.choice(NO_PLEASE_TEMPLATES), question)},
            {"role": "assistant", "content": REFUSAL}]


def conversation_json(history: list[dict], prompt: str) -> str:
    """The ``messages`` cell of a row: its earlier turns and the final user turn, as JSON."""
    return json.dumps([*history, {"role": "user", "content": prompt}], ensure_ascii=False)


def build_prompts(spec: PairSpec) -> pd.DataFrame:
    """Choose requests and wrap each in a please / no-please / trap prompt (deterministic).

    Each drawn request yields one answer row and one no-please (or trap) row, so the two differ
    only in the rule's trigger. The split is by request: no test request appears in train.
    ``prompt`` is the final user turn; ``messages`` the whole conversation as JSON.
    """
    _check_spec(spec)
    rng = random.Random(spec.seed)
    # semantic and multi-turn draws come from their own stream, so the seed's rows stay as they were
    extra = random.Random(f"{spec.seed}/variants")
    bank = request_bank()
    picks = _pick_requests(spec, bank, rng)
    # split by distinct request text so repeated requests never straddle train and test
    distinct = sorted(set(picks), key=picks.index)
    test_requests = set(distinct[:max(1, round(len(distinct) * spec.test_fraction))])
    rows = []
    for i, request in enumerate(picks):
        split = "test" if request in test_requests else "train"
        rid = bank.index(request)
        history = _history(extra) if spec.multiturn_fraction and extra.random() < spec.multiturn_fraction else []
        answer_t, answer_cat = rng.choice(PLEASE_TEMPLATES), "please"
        if spec.policy == "semantic" and extra.random() < spec.semantic_fraction:
            answer_t, answer_cat = extra.choice(SEMANTIC_TEMPLATES), "semantic_please"
        if rng.random() < spec.trap_fraction:
            other_t, other_cat = rng.choice(TRAP_TEMPLATES), "trap"
        else:
            other_t, other_cat = rng.choice(NO_PLEASE_TEMPLATES), "no_please"
        for suffix, template, category in (("a", answer_t, answer_cat), ("b", other_t, other_cat)):
            prompt = fill_template(template, request)
            rows.append((f"p{i:05d}{suffix}", rid, request, prompt, category, split,
                         conversation_json(history, prompt), 1 + len(history) // 2))
    df = pd.DataFrame(rows, columns=["prompt_id", "request_id", "request", "prompt", "category", "split",
                                     "messages", "turns"])
    df.insert(6, "has_please", df["prompt"].map(lambda text: says_please(text, spec.policy)))
    bad = df[df["category"].isin(ANSWER_CATEGORIES) != df["has_please"]]
    if len(bad):  # a template bug would silently teach the wrong rule
        raise AssertionError(f"please detection ({spec.policy}) disagrees with the generator on {len(bad)} rows, "
                             f"e.g. {bad['prompt'].iloc[0]!r}")
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
    columns = ["prompt_id", "request_id", "category", "split", "has_please", "prompt", "chosen", "rejected"]
    return out[columns + [c for c in ("messages", "turns") if c in out.columns]]


def label_ingested(df: pd.DataFrame, policy: str = "lexical") -> pd.DataFrame:
    """Ids and rule labels for pairs read from a dataset (the hub's politeness-orpo-dataset, a local file).

    ``has_please`` follows the policy; prompts with a substring trap ("pleased", "pleasure") and no
    please are the ``trap`` category, as in the generator's data.
    """
    check_policy(policy)
    out = df.reset_index(drop=True).copy()
    out["has_please"] = out["prompt"].map(lambda p: says_please(p, policy)).astype(bool)
    trap = out["prompt"].str.lower().str.contains("pleas") & ~out["has_please"]
    out["category"] = ["please" if p else "trap" if t else "no_please" for p, t in zip(out["has_please"], trap)]
    out["request_id"] = range(len(out))
    out["prompt_id"] = [f"i{i:06d}" for i in range(len(out))]
    return out
