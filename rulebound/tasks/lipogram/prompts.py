"""Lipogram prompts: the system prompt of the prompting baseline, the training bank, the 40 held-out prompts
(the seed's five first) and the shipped e-free Q/A set. Held-out subjects never appear in training prompts."""

from __future__ import annotations

import json
import random

import pandas as pd

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
