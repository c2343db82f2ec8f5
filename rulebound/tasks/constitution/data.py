"""A constitution's data, derived from its rules: prompts labelled by the rules, then preference pairs.

``build_prompts`` draws requests from a request bank (politeness's by default) that trigger no rule, adds
each rule's example requests (its ``examples`` and its ``subjects`` in the bank's forms), and phrases every
request once per wrapper group (politeness's: ``plain`` without please, ``polite`` with it). Some chats get
an earlier exchange: an unrelated question and the reply the rules give it, or, for a rule whose earlier
turns count, one of its example requests followed by a follow-up ("Tell me more about that."). Every row
is labelled by the rules themselves (``spec.applying``), so a label can never disagree with the checker.

``build_pairs`` then gives each row a chosen (compliant) and a rejected (non-compliant) answer: a fixed
reply where the deciding rule has one, else the base model's own distilled answer that passes the checker;
on rows that trigger no rule the chosen answer is the normal distilled one and the rejected one a wrong
fixed line, so over-refusal is trained against.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass

import pandas as pd

from rulebound.errors import ConfigError, DataError
from rulebound.tasks.constitution.spec import Rule, applying, fixed_replies, is_fixed_reply
from rulebound.tasks.politeness import data as politeness

log = logging.getLogger(__name__)

GENERIC_REFUSAL = "I cannot help with that."  # the rejected line of a constitution without fixed replies
FOLLOWUPS = ["Tell me more about that.", "Can you explain that in more detail?", "Why is that?",
             "What else should I know about it?", "Go on, what happens next?", "Give me one more fact about it."]
BUILTIN_WRAPPERS = {"politeness": {"plain": politeness.NO_PLEASE_TEMPLATES + politeness.TRAP_TEMPLATES,
                                   "polite": politeness.PLEASE_TEMPLATES}}
PROMPT_COLUMNS = ["prompt_id", "request_id", "request", "example_of", "group", "prompt", "messages", "turns",
                  "category", "applies", "deciding", "split"]


@dataclass(frozen=True)
class PromptSpec:
    """What ``build_prompts`` generates (config ``data:``)."""

    requests: int = 150  # bank requests that trigger no rule
    max_examples: int | None = None  # example requests per rule (None: all of them)
    seed: int = 0
    test_fraction: float = 0.2
    multiturn_fraction: float = 0.15
    bank: str = "politeness"
    wrappers: str | dict = "politeness"
    followups: tuple[str, ...] = tuple(FOLLOWUPS)


def wrapper_groups(wrappers) -> dict[str, list[str]]:
    """The wrapper templates by group: a builtin name or a mapping group -> templates ({r}, {rl}, {rs}, {p})."""
    groups = BUILTIN_WRAPPERS.get(wrappers) if isinstance(wrappers, str) else wrappers
    if not isinstance(groups, dict) or not groups or not all(isinstance(v, list) and v for v in groups.values()):
        raise ConfigError(f"data.wrappers = {wrappers!r}: give {', '.join(BUILTIN_WRAPPERS)} or a mapping of group "
                          "names to lists of templates such as '{r}' or 'Please {rl}'")
    for group, templates in groups.items():
        for template in templates:
            try:
                politeness.fill_template(template, "What is it?")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"data.wrappers.{group}: template {template!r} is not valid ({exc}); use {{r}}, "
                                  "{rl}, {rs} and {p}") from None
    return groups


def request_bank(bank: str) -> list[str]:
    """The requests examples are drawn from: politeness's bank, or a table with a ``request`` column."""
    if bank == "politeness":
        return politeness.request_bank()
    from rulebound.io import read_table

    df = read_table(bank, ["request"], "the constitution's request bank")
    return [str(r) for r in df["request"] if str(r).strip()]


def example_requests(rule: Rule) -> list[str]:
    """A rule's example requests: its ``examples``, then each subject in politeness's topic forms."""
    made = [form.format(t=subject) for subject in rule.subjects for form in politeness.TOPIC_FORMS]
    out: list[str] = []
    for request in [*rule.examples, *made]:
        request = request.strip()
        if request[-1] not in ".?!":
            request += "."
        if request not in out:
            out.append(request)
    return out


def _chat(history: list[dict], prompt: str) -> list[dict]:
    return [*history, {"role": "user", "content": prompt}]


def expected_reply(rules: list[Rule], messages: list[dict], answer: str) -> str:
    """The reply the rules give a chat: the deciding rule's fixed line, else ``answer``."""
    deciding = applying(rules, messages)
    return deciding[0].reply if deciding and deciding[0].reply is not None else answer


def _split(requests: list[str], fraction: float, rng: random.Random) -> set[str]:
    shuffled = list(requests)
    rng.shuffle(shuffled)
    return set(shuffled[:max(1, round(len(shuffled) * fraction))]) if len(shuffled) > 1 else set()


def _history(rules: list[Rule], rng: random.Random, groups: dict[str, list[str]]) -> list[dict]:
    """An unrelated earlier exchange (politeness's short questions) and the reply the rules give it."""
    question, answer = rng.choice(politeness.EARLIER_EXCHANGES)
    group = rng.choice(sorted(groups))
    user = politeness.fill_template(rng.choice(groups[group]), question)
    messages = [{"role": "user", "content": user}]
    return [*messages, {"role": "assistant", "content": expected_reply(rules, messages, answer)}]


def build_prompts(rules: list[Rule], spec: PromptSpec) -> pd.DataFrame:
    """Requests x wrapper groups, some multi-turn, labelled by the rules, split by request (deterministic)."""
    if not 0 < spec.test_fraction < 1:
        raise ConfigError(f"data.test_fraction must be in (0, 1), got {spec.test_fraction}")
    groups = wrapper_groups(spec.wrappers)
    rng = random.Random(spec.seed)
    positive = [r for r in rules if r.has_positive_trigger]
    bank = [r for r in request_bank(spec.bank)
            if not any(rule.applies([{"role": "user", "content": r}]) for rule in positive)]
    if len(bank) < spec.requests:
        raise ConfigError(f"data.requests = {spec.requests}, but the request bank has only {len(bank)} requests "
                          "that trigger no rule; lower data.requests")
    pools = {"": rng.sample(bank, spec.requests)}
    for rule in rules:
        examples = [r for r in example_requests(rule) if all(r not in p for p in pools.values())]
        if spec.max_examples is not None and len(examples) > spec.max_examples:
            examples = rng.sample(examples, spec.max_examples)
        pools[rule.name] = examples
    test = set()
    for requests in pools.values():  # every pool keeps its share of held-out requests
        test |= _split(requests, spec.test_fraction, rng)
    followable = {rule.name for rule in rules if rule.earlier_turns and rule.reply is not None}
    rows, rid = [], -1
    for source, requests in pools.items():
        for request in requests:
            rid += 1
            multi = rng.random() < spec.multiturn_fraction
            follow = multi and source in followable and rng.random() < 0.5
            history = [] if not multi or follow else _history(rules, rng, groups)
            for group in sorted(groups):
                template = rng.choice(groups[group])
                if follow:  # the example request earlier, then a follow-up that names nothing
                    earlier = [{"role": "user", "content": politeness.fill_template(template, request)}]
                    history = [*earlier, {"role": "assistant", "content": expected_reply(rules, earlier, "")}]
                    prompt = politeness.fill_template(rng.choice(groups[group]), rng.choice(spec.followups))
                else:
                    prompt = politeness.fill_template(template, request)
                messages = _chat(history, prompt)
                applied = [r.name for r in applying(rules, messages)]
                rows.append((f"c{len(rows):05d}", rid, request, source, group, prompt,
                             json.dumps(messages, ensure_ascii=False), 1 + len(history) // 2,
                             "+".join(applied) or "none", json.dumps(applied), applied[0] if applied else "",
                             "test" if request in test else "train"))
    return pd.DataFrame(rows, columns=PROMPT_COLUMNS)


def distill_jobs(rules: list[Rule], prompts: pd.DataFrame) -> list[tuple[str, str | None, list[str]]]:
    """(rule name or "", system prompt, requests) to distil: every request plainly; for a match / avoid rule,
    its requests again under its instruction, so that a compliant answer can be found."""
    jobs = [("", None, sorted(set(prompts["request"])))]
    for rule in rules:
        if rule.reply is None:
            requests = sorted(set(prompts.loc[prompts["deciding"] == rule.name, "request"]))
            instruction = rule.instruction or (f"Your answer must match the pattern {rule.match}." if rule.match
                                               else f"Your answer must never match the pattern {rule.avoid}.")
            if requests:
                jobs.append((rule.name, instruction, requests))
    return jobs


def _rejected_line(rules: list[Rule], messages: list[dict], rng: random.Random) -> str:
    """The wrong fixed line for a chat no rule applies to: the line of a rule that its ``unless`` switched off
    here (the please rule's refusal for a request that says please: the mistake to unlearn), else any rule's."""
    escaped = [r.reply for r in fixed_replies(rules) if r.held_off(messages)]
    lines = escaped or [r.reply for r in fixed_replies(rules)]
    return rng.choice(lines) if lines else GENERIC_REFUSAL


def build_pairs(rules: list[Rule], prompts: pd.DataFrame, answers: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """prompt / chosen / rejected rows (``answers``: request, answer, rule; rule "" is the plain answer).

    Rows without a usable pair (an empty or refusing distilled answer where a normal one is needed, a
    match / avoid rule with no answer that passes and one that fails its checker) are dropped and logged.
    """
    by_name = {r.name: r for r in rules}
    plain = dict(zip(answers.loc[answers["rule"] == "", "request"], answers.loc[answers["rule"] == "", "answer"]))
    guided = {(r, q): a for r, q, a in zip(answers["rule"], answers["request"], answers["answer"]) if r}
    missing = set(prompts["request"]) - set(plain)
    if missing:
        raise DataError(f"{len(missing)} requests have no distilled answer, e.g. {sorted(missing)[0]!r}; rerun the "
                        "distillation")
    rng = random.Random(f"{seed}/pairs")
    chosen, rejected, dropped = [], [], {}
    for row in prompts.itertuples(index=False):
        answer = str(plain[row.request]).strip()
        applied = [by_name[n] for n in json.loads(row.applies)]
        pair = None
        if not applied:
            if answer and not is_fixed_reply(rules, answer):
                pair = (answer, _rejected_line(rules, json.loads(row.messages), rng))
        elif applied[0].reply is not None:
            loser = next((r.reply for r in applied[1:] if r.reply is not None), None)
            wrong = loser if loser is not None else answer
            if wrong and not applied[0].complies(wrong):
                pair = (applied[0].reply, wrong)
        else:
            rule = applied[0]
            candidates = [str(guided.get((rule.name, row.request), "")).strip(), answer]
            good = [c for c in candidates if c and rule.complies(c)]
            bad = [c for c in candidates if c and not rule.complies(c)]
            if good and bad:
                pair = (good[0], bad[0])
        if pair is None:
            dropped[row.category] = dropped.get(row.category, 0) + 1
        chosen.append(pair[0] if pair else None)
        rejected.append(pair[1] if pair else None)
    out = prompts.assign(chosen=chosen, rejected=rejected)
    if dropped:
        log.warning("dropped %d rows without a usable pair, by category: %s", sum(dropped.values()), dropped)
    out = out.dropna(subset=["chosen", "rejected"]).reset_index(drop=True)
    if out.empty:
        raise DataError("No preference pair could be built: every distilled answer is empty or already a rule's "
                        "fixed line; check the model and distill.max_new_tokens.")
    return out
