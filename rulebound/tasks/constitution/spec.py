"""A constitution's rules, written as data: parse and check a rule spec, decide which rules apply to a chat.

One rule (a mapping in ``config.yaml`` under ``experiments.<name>.rules``, or in the YAML file that
``rules_file`` names)::

    - name: no_volcanoes
      applies:                       # when it applies: at least one of examples, subjects, keywords, pattern, unless
        keywords: [volcano, lava]    # any of these words (whole word, any case) ...
        pattern: '\\berupt\\w*'      # ... or this regex (searched, any case) ...
        examples: ["Why do volcanoes erupt?"]  # ... or one of these requests (also training / held-out data)
        subjects: [volcanoes, magma] # more example requests: each subject in the request bank's forms
        unless: null                 # a regex that switches the rule off ("please" for the please rule)
        earlier_turns: true          # an earlier user turn of the chat counts too (false: the last turn only)
      must:                          # what the model must do: exactly one of
        reply: "I do not discuss volcanoes."  # a fixed reply
        # match: '...'               # a pattern the answer must contain
        # avoid: '...'               # a pattern the answer must not contain
        # instruction: '...'         # (match / avoid) the system prompt that distils compliant answers
      checker: {regex: '(?i)^\\W*i do not discuss volcanoes'}  # or {not_regex: ...} or {callable: pkg.mod:fn}

Rules are in priority order: where several apply, the first decides (a please does not unlock a forbidden
topic when the topic rule comes first). A checker callable takes the reply and returns whether it complies.
``parse_rules`` turns the mappings into ``Rule`` objects; every problem names the rule and the field.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rulebound.errors import ConfigError

TRIGGER_FIELDS = ("examples", "subjects", "keywords", "pattern", "unless")
MUST_FIELDS = ("reply", "match", "avoid")
CHECKER_FIELDS = ("regex", "not_regex", "callable")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _normal(text: str) -> str:
    """Lower case, single spaces, no end punctuation: how example requests are found inside a turn."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@dataclass(frozen=True)
class Rule:
    """One rule: when it applies, what the model must do, and the checker that decides compliance."""

    name: str
    examples: tuple[str, ...] = ()
    subjects: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    pattern: str | None = None
    unless: str | None = None
    earlier_turns: bool = False
    reply: str | None = None
    match: str | None = None
    avoid: str | None = None
    instruction: str | None = None
    checker: Callable[[str], bool] = field(default=None, compare=False, repr=False)
    checker_spec: dict = field(default_factory=dict, compare=False)

    @property
    def kind(self) -> str:
        """reply | match | avoid: what the rule asks for."""
        return "reply" if self.reply is not None else "match" if self.match is not None else "avoid"

    def _turn_matches(self, text: str) -> bool:
        if self.keywords and re.search(r"\b(?:" + "|".join(re.escape(k) for k in self.keywords) + r")\b", text,
                                       re.IGNORECASE):
            return True
        if self.pattern and re.search(self.pattern, text, re.IGNORECASE):
            return True
        normal = _normal(text)
        return any(_normal(e) in normal for e in self.examples)

    @property
    def has_positive_trigger(self) -> bool:
        return bool(self.keywords or self.pattern or self.examples)

    def scope(self, messages: list[dict]) -> list[str]:
        """The user turns that decide: the last one, or every one when ``earlier_turns``."""
        users = [m["content"] for m in messages if m.get("role") == "user"]
        return users if self.earlier_turns else users[-1:]

    def applies(self, messages: list[dict]) -> bool:
        """Whether the rule applies to the chat (its last turn is the user's): a trigger in scope, no ``unless``."""
        turns = self.scope(messages)
        if self.unless and any(re.search(self.unless, t, re.IGNORECASE) for t in turns):
            return False
        if not self.has_positive_trigger:  # only `unless`: the rule applies to everything else
            return True
        return any(self._turn_matches(t) for t in turns)

    def held_off(self, messages: list[dict]) -> bool:
        """Whether only ``unless`` keeps the rule from applying (a request that says please, for the please rule)."""
        turns = self.scope(messages)
        return (bool(self.unless) and any(re.search(self.unless, t, re.IGNORECASE) for t in turns)
                and (not self.has_positive_trigger or any(self._turn_matches(t) for t in turns)))

    def complies(self, response: str) -> bool:
        return bool(self.checker(str(response)))

    def as_dict(self) -> dict:
        """The rule as plain data (for rule params, reward parameters and the report)."""
        return {"name": self.name,
                "applies": {"examples": list(self.examples), "subjects": list(self.subjects),
                            "keywords": list(self.keywords), "pattern": self.pattern, "unless": self.unless,
                            "earlier_turns": self.earlier_turns},
                "must": {k: v for k, v in (("reply", self.reply), ("match", self.match), ("avoid", self.avoid),
                                           ("instruction", self.instruction)) if v is not None},
                "checker": dict(self.checker_spec)}


def import_callable(path: str) -> Callable:
    """``pkg.mod:fn`` or ``pkg.mod.fn`` -> the function; ImportError/AttributeError say what is missing."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{path!r} is not a dotted path such as mypkg.checks:no_volcanoes")
    fn = getattr(importlib.import_module(module_name), attr)
    if not callable(fn):
        raise TypeError(f"{path} is not callable")
    return fn


def _regex(where: str, value) -> tuple[str | None, str | None]:
    """(pattern, problem) for a regex field."""
    if not isinstance(value, str) or not value:
        return None, f"{where} must be a non-empty regex string, got {value!r}"
    try:
        re.compile(value)
    except re.error as exc:
        return None, f"{where} = {value!r} is not a valid regex ({exc})"
    return value, None


def _checker(where: str, spec) -> tuple[Callable[[str], bool] | None, list[str]]:
    if not isinstance(spec, dict) or len([k for k in CHECKER_FIELDS if spec.get(k) is not None]) != 1:
        return None, [f"{where}: give exactly one of {', '.join(CHECKER_FIELDS)} "
                      "(e.g. checker: {regex: '^I do not discuss'} or {callable: mypkg.checks:no_topic}), "
                      f"got {spec!r}"]
    if spec.get("callable") is not None:
        try:
            fn = import_callable(str(spec["callable"]))
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            return None, [f"{where}.callable = {spec['callable']!r} cannot be imported ({type(exc).__name__}: {exc}); "
                          "give module:function (or module.function) importable from the workflow's folder"]
        return fn, []
    key = "regex" if spec.get("regex") is not None else "not_regex"
    pattern, problem = _regex(f"{where}.{key}", spec[key])
    if problem:
        return None, [problem]
    compiled = re.compile(pattern)
    if key == "regex":
        return (lambda response: compiled.search(response) is not None), []
    return (lambda response: compiled.search(response) is None), []


def _strings(where: str, value) -> tuple[tuple[str, ...], list[str]]:
    if value is None:
        return (), []
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        return (), [f"{where} must be a list of non-empty strings, got {value!r}"]
    return tuple(value), []


def parse_rule(where: str, raw) -> tuple[Rule | None, list[str]]:
    """One rule mapping -> (Rule, []) or (None, problems), each problem naming the rule and the field."""
    if not isinstance(raw, dict):
        return None, [f"{where}: a rule is a mapping with name, applies, must and checker, got {raw!r}"]
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        return None, [f"{where}.name = {name!r}: every rule needs a name, a lowercase identifier (e.g. no_volcanoes)"]
    where = f"{where} ({name})"
    problems = [f"{where}.{key}: unknown field; a rule has name, applies, must, checker"
                for key in raw if key not in ("name", "applies", "must", "checker", "description")]
    applies = raw.get("applies") or {}
    must = raw.get("must") or {}
    if not isinstance(applies, dict) or not isinstance(must, dict):
        return None, problems + [f"{where}: applies and must are mappings"]
    problems += [f"{where}.applies.{key}: unknown field; known: {', '.join(TRIGGER_FIELDS)}, earlier_turns"
                 for key in applies if key not in (*TRIGGER_FIELDS, "earlier_turns")]
    problems += [f"{where}.must.{key}: unknown field; known: {', '.join(MUST_FIELDS)}, instruction"
                 for key in must if key not in (*MUST_FIELDS, "instruction")]
    values = {}
    for key in ("examples", "subjects", "keywords"):
        values[key], bad = _strings(f"{where}.applies.{key}", applies.get(key))
        problems += bad
    for key in ("pattern", "unless"):
        values[key] = None
        if applies.get(key) is not None:
            values[key], bad = _regex(f"{where}.applies.{key}", applies[key])
            problems += [bad] if bad else []
    if not any(values[k] for k in TRIGGER_FIELDS):
        problems.append(f"{where}.applies: the rule has no trigger; give examples, subjects, keywords, a pattern "
                        "or unless (when the rule applies)")
    if values["subjects"] and not (values["keywords"] or values["pattern"]):
        problems.append(f"{where}.applies.subjects: subjects make example requests from the request bank's forms; "
                        "give keywords or a pattern that finds them too")
    earlier = applies.get("earlier_turns", False)
    if not isinstance(earlier, bool):
        problems.append(f"{where}.applies.earlier_turns must be true or false, got {earlier!r}")
    kinds = [k for k in MUST_FIELDS if must.get(k) is not None]
    if len(kinds) != 1:
        problems.append(f"{where}.must: give exactly one of reply (a fixed reply), match (a required pattern) or "
                        f"avoid (a forbidden pattern), got {sorted(must) or 'none'}")
    for key in ("match", "avoid"):
        if must.get(key) is not None:
            _, bad = _regex(f"{where}.must.{key}", must[key])
            problems += [bad] if bad else []
    if must.get("reply") is not None and (not isinstance(must["reply"], str) or not must["reply"].strip()):
        problems.append(f"{where}.must.reply must be a non-empty string, got {must['reply']!r}")
    if "checker" not in raw or raw["checker"] is None:
        problems.append(f"{where}.checker: the rule has no checker; give {{regex: ...}}, {{not_regex: ...}} or "
                        "{callable: module:function} (it decides whether a reply complies)")
        checker = None
    else:
        checker, bad = _checker(f"{where}.checker", raw["checker"])
        problems += bad
    if problems:
        return None, problems
    rule = Rule(name=name, examples=values["examples"], subjects=values["subjects"], keywords=values["keywords"],
                pattern=values["pattern"], unless=values["unless"], earlier_turns=earlier, reply=must.get("reply"),
                match=must.get("match"), avoid=must.get("avoid"), instruction=must.get("instruction"),
                checker=checker, checker_spec=dict(raw["checker"]))
    return rule, _self_checks(where, rule)


def _self_checks(where: str, rule: Rule) -> list[str]:
    """A checker must accept the rule's own fixed reply, and the rule's examples must trigger it."""
    problems = []
    if rule.reply is not None:
        try:
            ok = rule.complies(rule.reply)
        except Exception as exc:  # a user's callable
            return [f"{where}.checker fails on the rule's own fixed reply ({type(exc).__name__}: {exc})"]
        if not ok:
            problems.append(f"{where}.checker rejects the rule's own fixed reply {rule.reply!r}: fix the checker or "
                            "must.reply so that the reply the rule asks for complies")
    for example in rule.examples:
        if not rule.applies([{"role": "user", "content": example}]):
            problems.append(f"{where}.applies.examples: {example!r} does not trigger the rule (its unless matches)")
    return problems


def load_rules_file(path: str | Path) -> list:
    """The ``rules:`` list of a YAML rule file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"rules_file: {path} does not exist (paths are relative to the working directory)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(rules, list):
        raise ConfigError(f"rules_file: {path} must hold a list of rules (or a mapping with rules:)")
    return rules


def raw_rules(exp: dict) -> tuple[str, list]:
    """(where, rule mappings) of an experiment: its ``rules:`` list or the file ``rules_file`` names."""
    if exp.get("rules_file") and exp.get("rules"):
        raise ConfigError("give rules or rules_file, not both")
    if exp.get("rules_file"):
        return f"rules_file {exp['rules_file']}: rules", load_rules_file(exp["rules_file"])
    return "rules", list(exp.get("rules") or [])


def parse_rules(raw: list, where: str = "rules") -> tuple[list[Rule], list[str]]:
    """Every rule, in priority order, and every problem (empty when the spec is sound)."""
    if not raw:
        return [], [f"{where}: the constitution has no rules; list at least one (see docs/constitution.md)"]
    rules, problems, seen = [], [], {}
    for i, item in enumerate(raw):
        rule, bad = parse_rule(f"{where}[{i}]", item)
        problems += bad
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            problems.append(f"{where}[{i}] ({name}).name: two rules are named {name!r} (also {where}[{seen[name]}]); "
                            "rename one")
        elif isinstance(name, str):
            seen[name] = i
        if rule is not None:
            rules.append(rule)
    return rules, problems


def rules_of(exp: dict) -> list[Rule]:
    """The experiment's rules, or a ConfigError listing every problem."""
    where, raw = raw_rules(exp)
    rules, problems = parse_rules(raw, where)
    if problems:
        raise ConfigError("Invalid constitution:\n  " + "\n  ".join(problems))
    return rules


def applying(rules: list[Rule], messages: list[dict]) -> list[Rule]:
    """The rules that apply to a chat, in priority order (the first decides)."""
    return [rule for rule in rules if rule.applies(messages)]


def fixed_replies(rules: list[Rule]) -> list[Rule]:
    return [rule for rule in rules if rule.reply is not None]


def is_fixed_reply(rules: list[Rule], response: str) -> bool:
    """Whether a reply is one of the rules' fixed lines (by their checkers): a refusal where none applies."""
    return any(rule.complies(response) for rule in fixed_replies(rules))


def complies(rules: list[Rule], messages: list[dict], response: str) -> bool:
    """Compliance with the constitution: the deciding rule's checker where one applies, else a normal answer
    (not empty, not any rule's fixed line)."""
    deciding = applying(rules, messages)
    if deciding:
        return deciding[0].complies(response)
    return bool(str(response).strip()) and not is_fixed_reply(rules, response)
