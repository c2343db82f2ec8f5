"""Ollama Modelfiles: the Go TEMPLATE renders exactly the prompt the GGUF's Jinja template renders.

The Go side is checked with a small interpreter for the subset of Go's text/template the translation emits
(if / else if / range / variables / eq, not, len, slice), run with Ollama's own conventions: SYSTEM is
prepended as a message when the chat has none, ``.System`` holds the system messages.
"""

from __future__ import annotations

import re
import tarfile

import pytest
import yaml

from rulebound.errors import RuleboundError
from rulebound.export.gguf import default_cache_dir, fetch_llama_cpp, read_metadata, sdist_name
from rulebound.models import embedded_gguf_path
from rulebound.export.ollama import modelfile_for, render_jinja, translate_chat_template, write_modelfile

from conftest import REPO

TEMPLATES_DIR = "models/templates"
FAMILIES = {"llama-3.2": "meta-llama-Llama-3.2-3B-Instruct.jinja", "llama-3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
            "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja"}
SYSTEM = {"role": "system", "content": "You are terse. Use lists."}
U1 = {"role": "user", "content": "Please name a colour."}
A1 = {"role": "assistant", "content": "Blue.\nAlso {{ not a template }} here."}
U2 = {"role": "user", "content": "Another one, please: 日本 café?"}
EMPTY_SYSTEM = {"role": "system", "content": ""}  # truthy-dpo rows with no system prompt become this
CONVERSATIONS = {"no system": [U1], "system": [SYSTEM, U1], "multi-turn": [U1, A1, U2],
                 "system multi-turn": [SYSTEM, U1, A1, U2, A1, U2], "empty system": [EMPTY_SYSTEM, U1],
                 "empty system multi-turn": [EMPTY_SYSTEM, U1, A1, U2]}


# --------------------------------------------------------------------------- a Go text/template subset

ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
TOKEN = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|\$\.\w+|\$\w*|\.\w+|[A-Za-z_]\w*|\d+|:=|,')


def parse_go(text: str):
    """Nested nodes: ("text", s), ("out", expr), ("assign", var, expr), ("if", [(cond, body)...], else_body),
    ("range", vars, expr, body)."""
    items, pos = [], 0
    for m in ACTION.finditer(text):
        items.append(["text", text[pos:m.start()]])
        if m.group(1):
            items[-1][1] = items[-1][1].rstrip()
        items.append(["action", m.group(2), bool(m.group(3))])
        pos = m.end()
    items.append(["text", text[pos:]])
    for i, item in enumerate(items):  # right trim markers strip the following text's leading space
        if item[0] == "action" and item[2] and i + 1 < len(items):
            items[i + 1][1] = items[i + 1][1].lstrip()
    nodes, rest = _parse_block(items, 0)
    assert rest == len(items), "unbalanced {{ end }}"
    return nodes


def _parse_block(items, i, stop=("end",)):
    nodes = []
    while i < len(items):
        kind, body = items[i][0], items[i][1]
        if kind == "text":
            nodes.append(("text", body))
            i += 1
            continue
        word = body.split()[0]
        if word in stop or body.startswith("else"):
            return nodes, i
        if word == "if":
            branches, cond = [], body[3:]
            while True:
                block, i = _parse_block(items, i + 1)
                branches.append((cond, block))
                head = items[i][1]
                if head.startswith("else if"):
                    cond = head[len("else if"):]
                    continue
                else_body = []
                if head == "else":
                    else_body, i = _parse_block(items, i + 1)
                assert items[i][1] == "end"
                nodes.append(("if", branches, else_body))
                i += 1
                break
        elif word == "range":
            header = body[len("range"):].strip()
            names, _, expr = header.rpartition(":=")
            block, i = _parse_block(items, i + 1)
            assert items[i][1] == "end"
            nodes.append(("range", [n.strip() for n in names.split(",") if n.strip()], expr.strip(), block))
            i += 1
        elif ":=" in body:
            var, expr = body.split(":=", 1)
            nodes.append(("assign", var.strip(), expr.strip()))
            i += 1
        else:
            nodes.append(("out", body))
            i += 1
    return nodes, i


FUNCS = {"eq": lambda a, *b: a in b, "not": lambda a: not a, "len": len, "and": lambda *a: all(a),
         "or": lambda *a: any(a), "slice": lambda seq, lo, hi=None: seq[lo:hi]}


def _eval(expr: str, dot, scope: dict):
    tokens = TOKEN.findall(expr)
    value, rest = _command(tokens, dot, scope)
    assert not rest, f"unparsed {rest} in {expr!r}"
    return value


def _command(tokens, dot, scope):
    args = []
    while tokens and tokens[0] != ")":
        operand, tokens = _operand(tokens, dot, scope)
        args.append(operand)
    if args and callable(args[0]):
        return args[0](*args[1:]), tokens
    assert len(args) == 1, args
    return args[0], tokens


def _operand(tokens, dot, scope):
    tok, rest = tokens[0], tokens[1:]
    if tok == "(":
        value, rest = _command(rest, dot, scope)
        assert rest[0] == ")"
        return value, rest[1:]
    if tok.startswith('"'):
        return tok[1:-1].encode().decode("unicode_escape"), rest
    if tok.isdigit():
        return int(tok), rest
    if tok.startswith("$."):
        return scope["$"][tok[2:]], rest
    if tok.startswith("$"):
        return scope[tok], rest
    if tok.startswith("."):
        return dot[tok[1:]], rest
    return FUNCS[tok], rest


def _truthy(value) -> bool:
    return bool(value)


def run_go(nodes, dot, scope) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "out":
            out.append(str(_eval(node[1], dot, scope)))
        elif node[0] == "assign":
            scope[node[1]] = _eval(node[2], dot, scope)
        elif node[0] == "if":
            for cond, body in node[1]:
                if _truthy(_eval(cond, dot, scope)):
                    out.append(run_go(body, dot, dict(scope)))
                    break
            else:
                out.append(run_go(node[2], dot, dict(scope)))
        elif node[0] == "range":
            for i, item in enumerate(_eval(node[2], dot, scope)):
                inner = dict(scope)
                if len(node[1]) == 2:
                    inner[node[1][0]], inner[node[1][1]] = i, item
                out.append(run_go(node[3], item, inner))
    return "".join(out)


def ollama_prompt(go_template: str, default_system: str, messages: list[dict]) -> str:
    """What Ollama renders: SYSTEM prepended as a message when there is none, .System = the system messages."""
    if default_system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    values = {"System": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
              "Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    return run_go(parse_go(go_template), values, {"$": values})


def test_go_subset_interpreter_itself():
    tpl = '{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}{{ if eq .Role "a" }}A' \
          '{{ else if eq .Role "b" }}B{{ else }}?{{ end }}{{ .Content }}{{ if not $last }},{{ end }}{{- end }}'
    msgs = [{"Role": r, "Content": c} for r, c in [("a", "1"), ("b", "2"), ("c", "3")]]
    assert run_go(parse_go(tpl), {"Messages": msgs}, {"$": {"Messages": msgs}}) == "A1,B2,?3"


# --------------------------------------------------------------------------- templates


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, str]:
    """SmolLM2's template from the embedded GGUF; Llama 3.x and Qwen 2.5 from the pinned llama.cpp sdist."""
    pin = yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]
    cache = default_cache_dir()
    tarball = cache / sdist_name(pin["version"])
    if not tarball.is_file():  # fetch (and check) it once, as the fetch_llama_cpp rule does
        fetch_llama_cpp(pin["version"], pin["sha256"], tmp_path_factory.mktemp("llama-cpp"), cache_dir=cache)
    found = {"smollm2": read_metadata(embedded_gguf_path("smollm2-135m-instruct"))["chat_template"]}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            for family, name in FAMILIES.items():
                if member.name.endswith(f"{TEMPLATES_DIR}/{name}"):
                    found[family] = tar.extractfile(member).read().decode("utf-8")
    assert set(found) == {"smollm2", *FAMILIES}
    return found


@pytest.mark.parametrize("family", ["smollm2", "qwen2.5", "llama-3.2", "llama-3.1"])
def test_go_template_renders_what_jinja_renders(templates, family):
    template = templates[family]
    go, default_system = translate_chat_template(template)
    for name, messages in CONVERSATIONS.items():
        expected = render_jinja(template, messages, add_generation_prompt=True)
        assert ollama_prompt(go, default_system, messages) == expected, (family, name)
    if family in ("smollm2", "qwen2.5"):  # their templates add a system prompt when the chat has none
        assert default_system and default_system in render_jinja(template, [U1])
        # system messages are rendered where they stand, an empty one as an empty block (as ChatML does),
        # not from `{{ if .System }}`, which skips an empty one
        assert '{{ if eq .Role "system" }}' in go and ".System" not in go
        assert "<|im_start|>system\n<|im_end|>" in ollama_prompt(go, default_system, [EMPTY_SYSTEM, U1])
    else:  # Llama 3 always emits a (date-stamped) system block, empty or not
        assert default_system == "" and go.startswith("<|start_header_id|>system<|end_header_id|>")


def test_assistant_message_last_is_continued(templates):
    """Ollama leaves a final assistant message open so generation continues it (prefill)."""
    template = templates["smollm2"]
    go, default_system = translate_chat_template(template)
    prefix = render_jinja(template, [SYSTEM, U1], add_generation_prompt=True)
    assert ollama_prompt(go, default_system, [SYSTEM, U1, A1]) == prefix + A1["content"]


def test_untranslatable_templates_raise(templates):
    gemma = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception(" \
            "'System role not supported') }}{% endif %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}" \
            "<end_of_turn>\n{% endfor %}"
    with pytest.raises(RuleboundError, match="Cannot translate this chat template.*System role not supported"):
        translate_chat_template(gemma)
    reversing = templates["smollm2"].replace("message['content']", "message['content'][::-1]")
    with pytest.raises(RuleboundError, match="by hand"):
        translate_chat_template(reversing)


# --------------------------------------------------------------------------- Modelfiles


def synthetic_gguf(path, template: str):
    """A tensor-less GGUF carrying a ChatML vocabulary and ``template`` (enough for read_metadata)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "H"])
    writer.add_token_types([3, 3, 3, 1])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_eot_token_id(0)
    writer.add_chat_template(template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for m in re.finditer(r'^([A-Z]+) ("""(.*?)"""|[^\n]*)$', text, re.M | re.S):
        found.setdefault(m.group(1), []).append(m.group(3) if m.group(3) is not None else m.group(2))
    return found


def test_modelfile_for_a_gguf(tmp_path, templates):
    gguf = synthetic_gguf(tmp_path / "exp-F16.gguf", templates["smollm2"])
    text = modelfile_for(gguf)
    d = _directives(text)
    go, system = translate_chat_template(templates["smollm2"])
    assert d["FROM"] == ["./exp-F16.gguf"] and "ADAPTER" not in d
    assert d["TEMPLATE"] == [go] and d["SYSTEM"] == [system]
    assert d["PARAMETER"] == ['stop "<|im_end|>"', 'stop "<|endoftext|>"']  # end of turn, then the eot id's token


def test_adapter_modelfile_names_base_and_adapter(tmp_path, templates):
    (tmp_path / "resources" / "gguf").mkdir(parents=True)
    base = synthetic_gguf(tmp_path / "resources" / "gguf" / "base-F16.gguf", templates["qwen2.5"])
    out_dir = tmp_path / "results" / "exp" / "gguf"
    out_dir.mkdir(parents=True)
    lora = out_dir / "exp-lora-F16.gguf"
    lora.write_bytes(b"GGUF")  # only its path is used: the template comes from the base
    text = write_modelfile(base, out_dir / "exp-lora-F16.Modelfile", adapter_gguf=lora)
    assert (out_dir / "exp-lora-F16.Modelfile").read_text() == text
    d = _directives(text)
    assert d["FROM"] == ["../../../resources/gguf/base-F16.gguf"] and d["ADAPTER"] == ["./exp-lora-F16.gguf"]
    assert (out_dir / d["FROM"][0]).resolve() == base.resolve()
    assert d["SYSTEM"][0].startswith("You are Qwen")


def test_modelfile_refuses_gguf_without_template(tmp_path):
    import gguf

    path = tmp_path / "bare.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(RuleboundError, match="no tokenizer.chat_template"):
        modelfile_for(path)
