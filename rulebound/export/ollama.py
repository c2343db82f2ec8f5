"""Ollama Modelfiles for the GGUF exports: FROM, TEMPLATE (Go syntax), stop tokens and the default system prompt.

Ollama does not run the Jinja chat template stored in a GGUF; it needs a Go template. Rather than parse
Jinja, the template is *probed*: rendered on conversations with marker contents, from which the text
around each role's content (system, user, assistant), the generation prompt and the default system
prompt are read off. Those pieces become the Go template, and before anything is written the pieces are
checked to reproduce the Jinja rendering of several conversations (with and without a system message,
multi-turn). A template that does not fit that shape (system folded into the first user turn, content
rewritten, ...) raises a RuleboundError instead of producing a Modelfile that formats chats differently
from training. ChatML (SmolLM2, Qwen) and Llama-3 templates fit.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from rulebound.errors import RuleboundError
from rulebound.export.gguf import end_of_turn_token, read_metadata
from rulebound.io import write_text

log = logging.getLogger(__name__)

# Marker contents for probing; plain ASCII without whitespace so no template trims or splits them.
SYS, USER1, ASSISTANT1, USER2 = "SYSMARK7f3a", "USERMARK1b2c", "ASSISTANTMARK9d4e", "USERMARK2e5f"
# Conversations every translation is checked on (roles only; contents are filled in).
CHECK_CONVERSATIONS = [
    ["user"],
    ["system", "user"],
    ["user", "assistant", "user"],
    ["system", "user", "assistant", "user"],
    ["user", "assistant", "user", "assistant", "user"],
]


@dataclass(frozen=True)
class TemplatePieces:
    """The text a chat template puts around each message, as read off by ``probe_chat_template``."""

    system_prefix: str
    system_suffix: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str
    generation_prompt: str
    default_system: str  # what the template uses when the chat has no system message ("" if nothing)
    system_always: bool  # the template emits an empty system block when the chat has none (Llama 3)
    # System messages are rendered where they stand in the chat, empty ones too (ChatML renders an empty
    # system message as an empty block). False: the older translation, one block from ``.System`` at the
    # top and only when it is non-empty; it is still read back so that conformance can call it stale.
    system_in_loop: bool = True


def render_jinja(template: str, messages: list[dict], *, add_generation_prompt: bool = True, eos: str = "") -> str:
    """Render a chat template the way llama.cpp's Python bindings do (sandboxed, trim/lstrip blocks).

    ``bos_token`` is empty: llama.cpp and Ollama add BOS while tokenizing where the GGUF asks for it.
    ``strftime_now`` is left undefined so date-stamped templates (Llama 3.x) use their own fixed fallback
    date, which keeps the Modelfile byte-identical from run to run.
    """
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token="", eos_token=eos or "", tools=None)


def _between(text: str, start: str | None, end: str | None) -> str:
    """The text after marker ``start`` (or from the beginning) up to marker ``end`` (or to the end)."""
    lo = text.index(start) + len(start) if start else 0
    hi = text.index(end, lo) if end else len(text)
    return text[lo:hi]


def _strip(text: str, prefix: str = "", suffix: str = "", what: str = "") -> str:
    if not text.startswith(prefix) or not text.endswith(suffix) or len(text) < len(prefix) + len(suffix):
        raise ValueError(f"{what}: {text!r} is not {prefix!r} + ... + {suffix!r}")
    return text[len(prefix):len(text) - len(suffix)]


def probe_chat_template(template: str, eos: str = "") -> TemplatePieces:
    """Read the per-role wrapping off a Jinja chat template; RuleboundError if it has another shape."""
    def render(roles_contents, gen):
        return render_jinja(template, [{"role": r, "content": c} for r, c in roles_contents],
                            add_generation_prompt=gen, eos=eos)

    try:
        full = render([("system", SYS), ("user", USER1), ("assistant", ASSISTANT1), ("user", USER2)], True)
        closed_assistant = render([("system", SYS), ("user", USER1), ("assistant", ASSISTANT1)], False)
        closed_user = render([("system", SYS), ("user", USER1)], False)
        no_system = render([("user", USER1)], True)
        system_prefix = _between(full, None, SYS)
        assistant_suffix = _between(closed_assistant, ASSISTANT1, None)
        user_suffix = _between(closed_user, USER1, None)
        user_prefix = _strip(_between(full, ASSISTANT1, USER2), prefix=assistant_suffix, what="assistant->user")
        system_suffix = _strip(_between(full, SYS, USER1), suffix=user_prefix, what="system->user")
        assistant_prefix = _strip(_between(full, USER1, ASSISTANT1), prefix=user_suffix, what="user->assistant")
        generation_prompt = _strip(_between(full, USER2, None), prefix=user_suffix, what="generation prompt")
        head = _strip(_between(no_system, None, USER1), suffix=user_prefix, what="chat without system")
        if head:
            default_system = _strip(head, system_prefix, system_suffix, what="default system block")
        else:
            default_system = ""
    except Exception as exc:  # a template error, a missing marker or a shape mismatch: all untranslatable
        raise RuleboundError(
            f"Cannot translate this chat template into an Ollama template ({type(exc).__name__}: {exc}). "
            "rulebound translates templates that wrap every message in fixed text per role (ChatML, Llama 3); "
            f"write the Modelfile's TEMPLATE by hand for this model. Template starts: {template[:120]!r}"
        ) from exc
    always = bool(head) and not default_system
    return TemplatePieces(system_prefix, system_suffix, user_prefix, user_suffix, assistant_prefix,
                          assistant_suffix, generation_prompt, default_system, system_always=always,
                          system_in_loop=not always)


def render_pieces(pieces: TemplatePieces, messages: list[dict]) -> str:
    """What Ollama sends the model for ``messages`` through ``go_template(pieces)`` with SYSTEM set.

    Mirrors Ollama: SYSTEM is prepended as a message when the chat has none, ``.System`` is all system
    messages joined by a blank line, ``.Messages`` holds every message (system ones too), and an assistant
    message at the end is left open (continued).
    """
    if pieces.default_system and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": pieces.default_system}, *messages]
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out = []
    if not pieces.system_in_loop and (system or pieces.system_always):
        out = [pieces.system_prefix, system, pieces.system_suffix]
    for i, message in enumerate(messages):
        last = i == len(messages) - 1
        if message["role"] == "system" and pieces.system_in_loop:
            out += [pieces.system_prefix, message["content"], pieces.system_suffix]
        elif message["role"] == "user":
            out += [pieces.user_prefix, message["content"], pieces.user_suffix, pieces.generation_prompt if last else ""]
        elif message["role"] == "assistant":
            out += [pieces.assistant_prefix, message["content"], "" if last else pieces.assistant_suffix]
    return "".join(out)


def check_pieces(template: str, pieces: TemplatePieces, eos: str = "") -> None:
    """Both renderings must agree on every check conversation, or the translation is refused."""
    contents = {"system": "You answer briefly.", "user": "Please list three colours.", "assistant": "Red, green, blue."}
    for roles in CHECK_CONVERSATIONS:
        messages = [{"role": r, "content": f"{contents[r]} ({i})"} for i, r in enumerate(roles)]
        expected = render_jinja(template, messages, add_generation_prompt=True, eos=eos)
        got = render_pieces(pieces, messages)
        if got != expected:
            raise RuleboundError(
                f"The Ollama translation of this chat template formats a {'/'.join(roles)} chat differently "
                f"from the Jinja template:\n  jinja: {expected!r}\n  ollama: {got!r}\n"
                "Write the Modelfile's TEMPLATE by hand for this model."
            )


def _literal(text: str) -> str:
    if "{{" in text or "}}" in text or '"""' in text:
        raise RuleboundError(f"Template text {text!r} contains '{{{{', '}}}}' or '\"\"\"', which a Modelfile "
                             "TEMPLATE cannot hold literally; write the Modelfile by hand.")
    return text


def go_template(pieces: TemplatePieces) -> str:
    """The Ollama (Go text/template) equivalent of the probed chat template."""
    p = {k: _literal(v) for k, v in vars(pieces).items() if isinstance(v, str)}
    head, in_loop = "", ""
    if pieces.system_in_loop:
        in_loop = f'{{{{ if eq .Role "system" }}}}{p["system_prefix"]}{{{{ .Content }}}}{p["system_suffix"]}{{{{ else }}}}'
    else:
        head = f"{p['system_prefix']}{{{{ .System }}}}{p['system_suffix']}"
        if not pieces.system_always:
            head = f"{{{{ if .System }}}}{head}{{{{ end }}}}"
    return (
        f"{head}"
        "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        f"{in_loop}"
        f'{{{{ if eq .Role "user" }}}}{p["user_prefix"]}{{{{ .Content }}}}{p["user_suffix"]}'
        f"{{{{ if $last }}}}{p['generation_prompt']}{{{{ end }}}}"
        f'{{{{ else if eq .Role "assistant" }}}}{p["assistant_prefix"]}{{{{ .Content }}}}'
        f"{{{{ if not $last }}}}{p['assistant_suffix']}{{{{ end }}}}"
        "{{ end }}" + ("{{ end }}" if in_loop else "") + "{{ end }}"
    )


def translate_chat_template(template: str, eos: str = "") -> tuple[str, str]:
    """(Go template, default system prompt) for a Jinja chat template, checked on several conversations."""
    pieces = probe_chat_template(template, eos)
    check_pieces(template, pieces, eos)
    return go_template(pieces), pieces.default_system


def stop_tokens(meta: dict) -> list[str]:
    """Every token that ends an assistant turn: the template's end-of-turn token, eos and eot."""
    by_id = {i: tok for tok, i in meta["special_tokens"].items()}
    eot = end_of_turn_token(meta["chat_template"], meta["special_tokens"], meta["bos_token"], meta["eos_token"])
    candidates = [eot, meta["eos_token"], by_id.get(meta["eot_token_id"])]
    return list(dict.fromkeys(t for t in candidates if t))


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # Ollama parses Go-style double-quoted strings


def _rel(path, start) -> str:
    rel = os.path.relpath(Path(path).resolve(), Path(start).resolve())
    return rel if rel.startswith("..") else f"./{rel}"


def modelfile_for(gguf_path, *, adapter_gguf=None, modelfile_dir=None) -> str:
    """An Ollama Modelfile for ``gguf_path``; with ``adapter_gguf`` the LoRA GGUF is applied on it (ADAPTER).

    Paths are written relative to ``modelfile_dir`` (default: the folder of the adapter, else of the GGUF),
    which is where ``ollama create -f`` resolves them. The template comes from ``gguf_path``: a LoRA GGUF
    carries none.
    """
    gguf_path = Path(gguf_path)
    meta = read_metadata(gguf_path)
    if not meta["chat_template"]:
        raise RuleboundError(f"{gguf_path} has no tokenizer.chat_template; Ollama would not know how to format "
                             "chats. Re-export it from a folder whose tokenizer holds the chat template.")
    template, system = translate_chat_template(meta["chat_template"], meta["eos_token"] or "")
    modelfile_dir = Path(modelfile_dir or Path(adapter_gguf or gguf_path).parent)
    lines = ["# Written by rulebound. Create the model with: ollama create <name> -f <this file>",
             f"FROM {_rel(gguf_path, modelfile_dir)}"]
    if adapter_gguf:
        lines.append(f"ADAPTER {_rel(adapter_gguf, modelfile_dir)}")
    lines.append(f'TEMPLATE """{template}"""')
    if system:
        lines.append(f'SYSTEM """{_literal(system)}"""')
    lines += [f"PARAMETER stop {_quoted(tok)}" for tok in stop_tokens(meta)]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path, out_path, *, adapter_gguf=None) -> str:
    """Write ``modelfile_for`` next to ``out_path`` (atomically) and return its text."""
    text = modelfile_for(gguf_path, adapter_gguf=adapter_gguf, modelfile_dir=Path(out_path).parent)
    write_text(text, out_path)
    log.info("wrote %s (FROM %s%s)", out_path, gguf_path, f", ADAPTER {adapter_gguf}" if adapter_gguf else "")
    return text
