"""GGUF conformance: every exported file checked the way llama.cpp, llama-server and Ollama will run it.

Per GGUF (F16, every quant, the LoRA GGUF on its base GGUF) and per check, one row of
``results/<experiment>/eval/conformance.csv``:

- ``chat_template``: the GGUF carries ``tokenizer.chat_template`` and, rendered as llama-cpp-python renders
  it (its own Jinja formatter, the GGUF's BOS/EOS text), formats the evaluation chats, a system-turn chat
  and multi-turn chats exactly as the HF tokenizer's ``apply_chat_template`` does;
- ``eos_token``: the GGUF's EOS id and text are the HF tokenizer's;
- ``end_of_turn_token``: the token that ends an assistant turn in the GGUF's template is the HF template's
  (same id, same text), and llama.cpp treats it as end of generation;
- ``generation``: greedy decoding of every evaluation chat (as the GGUF evaluation decodes: temperature 0,
  top-k 1) stops on an end-of-generation token within a generous limit, and no template token
  (``<|im_start|>``, ``<|im_end|>``, BOS, EOS) appears among the generated tokens or in their text. A reply
  that runs to the limit is the model's own when the HF model it was exported from, fed the same tokens, never
  gives an end-of-generation token ``STOP_PROB`` or more along it: it would not have stopped there either;
- ``modelfile_template`` / ``modelfile_stop``: the Ollama Modelfile next to the file names it (FROM, and
  ADAPTER for the LoRA), its TEMPLATE and SYSTEM, read back, format those chats as the GGUF's template
  does, and its stop parameters hold the end-of-turn and EOS tokens, each a special token of the GGUF.

Failing checks do not stop the other checks: the table is complete, then ``write_conformance`` raises.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd

from rulebound.errors import RuleboundError
from rulebound.export.gguf import end_of_turn_token, read_metadata
from rulebound.export.ollama import TemplatePieces, go_template, probe_chat_template, render_jinja, render_pieces
from rulebound.io import write_csv

log = logging.getLogger(__name__)

COLUMNS = ["file", "check", "passed", "detail"]
CHECKS = ("chat_template", "eos_token", "end_of_turn_token", "generation", "modelfile_template", "modelfile_stop")
# What to do when a check fails: the rule's error message carries it.
FIXES = {
    "chat_template": "the merged folder's tokenizer must hold the training chat template (chat_template.jinja or "
                     "tokenizer_config.json): fix it there and rerun convert_gguf (and quantize_gguf).",
    "eos_token": "set eos_token in the model's tokenizer_config.json and generation_config.json to the token the "
                 "HF tokenizer ends with, then convert the GGUF again.",
    "end_of_turn_token": "the GGUF's chat template must end assistant turns with the HF template's token, and that "
                         "token must be the GGUF's eos or eot token: fix tokenizer_config.json and convert again.",
    "generation": "a file that does not stop runs on in llama.cpp and Ollama: check eos/end-of-turn above; if those "
                  "pass, the model itself does not end its turns (look at the training data's answers).",
    "modelfile_template": "regenerate the Modelfile from this GGUF (delete it and rerun rule ollama_modelfile), or "
                          "fix its TEMPLATE/SYSTEM by hand so that it formats chats as the GGUF's template.",
    "modelfile_stop": "regenerate the Modelfile (delete it and rerun rule ollama_modelfile) so that its "
                      "PARAMETER stop lines name the GGUF's end-of-turn and EOS tokens.",
}
# Generous: the evaluation cuts answers at tens of tokens (max_new_tokens 16-48), but the model's own complete
# answers run longer: SmolLM2-135M-Instruct's greedy answer to "What are the colors of the rainbow?" ends its turn
# after 271 tokens (measured), so a 256 limit failed a sound file. A file that never ends its turn runs to any limit.
MIN_TOKEN_LIMIT, LIMIT_PER_EVAL_TOKEN = 1024, 4
# Greedy decoding of a small model can fall into a loop that repeats itself to any limit: the model's own
# (SmolLM2-135M-Instruct itself loops on 23 of the lipogram's 42 chats within 512 tokens), not the export's.
# A reply whose last MIN_LOOP_REPEATS periods repeat exactly is cut there and reported as a loop, not as a failure;
# an export fault shows as template tokens generated after the turn (leaked), which fails.
MAX_LOOP_PERIOD, MIN_LOOP_REPEATS, MIN_LOOP_SPAN = 128, 3, 48
# A small model can also ramble on without looping: SmolLM2-135M-Instruct's Q4_K_M, trained two smoke steps, writes
# 1024 tokens on "Did Albert Einstein fail math in school?" (the smoke run, measured; its F16 loops instead, and the
# merged HF model, fed that reply, gives its end tokens at most p 0.001 along it). Such a reply is judged against the
# HF model it was exported from, fed the prompt and the reply (one forward pass): if at no position its end-of-
# generation tokens reach STOP_PROB, greedy HF decoding along that path would not have stopped either, and the run-on
# is the model's. If they do, the file failed to stop where its model stops: that fails. STOP_PROB 0.5 makes the end
# token the HF model's certain greedy choice.
STOP_PROB = 0.5
REFERENCE_FP32_BYTES = 4 * 2**30
SYSTEM_CHAT = [{"role": "system", "content": "You are a concise assistant. Answer in one sentence."},
               {"role": "user", "content": "Please tell me what a rainbow is."}]
MULTI_TURN_CHAT = [{"role": "system", "content": "You are a concise assistant."},
                   {"role": "user", "content": "Please name a fruit."},
                   {"role": "assistant", "content": "An apple."},
                   {"role": "user", "content": "Please name another one."}]
EXTRA_CHATS = [SYSTEM_CHAT, MULTI_TURN_CHAT]


@dataclass(frozen=True)
class Target:
    """One exported file: ``gguf`` is what llama.cpp loads, with ``lora`` on it for the LoRA GGUF."""

    file: str  # the exported file the rows are about
    gguf: str
    lora: str | None = None
    modelfile: str | None = None
    reference: str | None = None  # the HF model folder the file was exported from (merged, or the LoRA's base)
    reference_adapter: str | None = None  # the PEFT adapter on ``reference`` (the LoRA GGUF's)

    @classmethod
    def from_mapping(cls, entry) -> "Target":
        return cls(**{f.name: (str(entry[f.name]) if entry.get(f.name) else None) for f in fields(cls)})


@dataclass(frozen=True)
class Generation:
    """One greedy reply: generated token ids (the stop token excluded), their text, how it ended."""

    tokens: list[int]
    text: str  # special tokens rendered, so that a leaked <|im_start|> shows
    stop_token: int | None  # the end-of-generation token it stopped on; None: it did not stop
    loop_period: int | None = None  # it was cut as a repetition loop of this many tokens
    prompt_tokens: tuple[int, ...] = ()  # the prompt as llama.cpp tokenized it
    reference_stop: float | None = None  # a run-on reply: the HF model's highest end-of-generation probability on it
    # a reply holding a template token: whether the HF model's own greedy choice at its first one is that token too
    reference_leak: bool | None = None


def token_limit(max_new_tokens: int | None) -> int:
    """The reply limit: generous beside the evaluation's own ``max_new_tokens``."""
    return max(MIN_TOKEN_LIMIT, LIMIT_PER_EVAL_TOKEN * int(max_new_tokens or 0))


def loop_period(tokens: list[int]) -> int | None:
    """The period p of a loop the reply ends in (its last MIN_LOOP_REPEATS * p tokens, at least MIN_LOOP_SPAN, are
    p-periodic), or None."""
    n = len(tokens)
    for p in range(1, MAX_LOOP_PERIOD + 1):
        span = max(MIN_LOOP_REPEATS * p, MIN_LOOP_SPAN)
        if span > n:
            break
        if tokens[n - span + p:] == tokens[n - span:n - p]:
            return p
    return None


def row(file: str, check: str, passed: bool, detail: str) -> dict:
    return {"file": file, "check": check, "passed": bool(passed), "detail": detail}


def chat_label(chat: list[dict]) -> str:
    return "/".join(m["role"] for m in chat) + f": {chat[-1]['content'][:40]!r}"


# --------------------------------------------------------------------------- template and tokens


def render_like_llama_cpp(template: str, chats: list[list[dict]], *, bos: str, eos: str) -> list[str]:
    """Each chat's prompt as llama-cpp-python's chat completion builds it from a GGUF's template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos or "", bos_token=bos or "")
    return [formatter(messages=chat).prompt for chat in chats]


def render_like_hf(tokenizer, chats: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) for chat in chats]


def first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"at character {i}: GGUF {a[max(0, i - 20):i + 40]!r} vs HF {b[max(0, i - 20):i + 40]!r}"


def compare_renderings(chats: list[list[dict]], gguf_texts: list[str], hf_texts: list[str]) -> tuple[bool, str]:
    """Whether both renderings agree on every chat; the detail names the first chat that differs."""
    differ = [i for i, (a, b) in enumerate(zip(gguf_texts, hf_texts)) if a != b]
    kinds = (f"{sum(any(m['role'] == 'system' for m in c) for c in chats)} with a system turn, "
             f"{sum(sum(m['role'] == 'user' for m in c) > 1 for c in chats)} multi-turn")
    if not differ:
        return True, f"{len(chats)} chats ({kinds}) render identically"
    i = differ[0]
    return False, (f"{len(differ)} of {len(chats)} chats render differently from the HF template; first "
                   f"({chat_label(chats[i])}) {first_difference(gguf_texts[i], hf_texts[i])}")


def check_chat_template(file: str, meta: dict, tokenizer, chats: list[list[dict]]) -> dict:
    template = meta["chat_template"]
    if not template:
        return row(file, "chat_template", False, "the GGUF has no tokenizer.chat_template")
    if not tokenizer.chat_template:
        return row(file, "chat_template", False, "the HF tokenizer has no chat template to compare with")
    try:
        gguf_texts = render_like_llama_cpp(template, chats, bos=meta["bos_token"], eos=meta["eos_token"])
    except Exception as exc:  # any Jinja error: the file cannot format chats
        return row(file, "chat_template", False, f"the GGUF's template fails to render ({type(exc).__name__}: {exc})")
    passed, detail = compare_renderings(chats, gguf_texts, render_like_hf(tokenizer, chats))
    return row(file, "chat_template", passed, detail)


def hf_special_tokens(tokenizer) -> dict[str, int]:
    """The HF tokenizer's added special tokens, text -> id (the ones a template can end a turn with)."""
    return {tok.content: i for i, tok in tokenizer.added_tokens_decoder.items()}


def check_eos(file: str, meta: dict, tokenizer) -> dict:
    got, want = (meta["eos_token_id"], meta["eos_token"]), (tokenizer.eos_token_id, tokenizer.eos_token)
    if got[0] is None:
        return row(file, "eos_token", False, "the GGUF names no eos token (tokenizer.ggml.eos_token_id)")
    detail = f"GGUF eos {got[1]!r} (id {got[0]}), HF eos {want[1]!r} (id {want[0]})"
    return row(file, "eos_token", tuple(got) == tuple(want), detail)


def check_end_of_turn(file: str, meta: dict, tokenizer, is_eog) -> dict:
    """The template's end-of-turn token: same text and id in the GGUF and HF, and an end-of-generation token."""
    try:
        eot = end_of_turn_token(meta["chat_template"] or "", meta["special_tokens"], meta["bos_token"],
                                meta["eos_token"])
        hf_eot = end_of_turn_token(tokenizer.chat_template or "", hf_special_tokens(tokenizer),
                                   tokenizer.bos_token, tokenizer.eos_token)
    except RuleboundError as exc:
        return row(file, "end_of_turn_token", False, str(exc))
    eot_id, hf_id = meta["special_tokens"][eot], hf_special_tokens(tokenizer)[hf_eot]
    problems = []
    if (eot, eot_id) != (hf_eot, hf_id):
        problems.append("differs from HF")
    if eot_id not in (meta["eos_token_id"], meta["eot_token_id"]):
        problems.append("is neither the GGUF's eos nor its eot token")
    if not is_eog(eot_id):
        problems.append("is not an end-of-generation token in llama.cpp")
    detail = f"GGUF {eot!r} (id {eot_id}), HF {hf_eot!r} (id {hf_id})" + (f": {'; '.join(problems)}" if problems else "")
    return row(file, "end_of_turn_token", not problems, detail)


def template_tokens(meta: dict) -> dict[str, int]:
    """Special tokens that belong to the chat format (in the template, or BOS/EOS): never part of a reply."""
    template = meta["chat_template"] or ""
    names = {t for t in meta["special_tokens"] if t and t in template} | {meta["bos_token"], meta["eos_token"]}
    return {t: meta["special_tokens"][t] for t in names if t and t in meta["special_tokens"]}


# --------------------------------------------------------------------------- generation


def greedy_reply(llm, prompt: str, *, limit: int, added_special: bool = True) -> Generation:
    """Greedy decoding as the GGUF evaluation's chat completion does it (temperature 0, top-k 1, no penalty),
    token by token so that the stop token and any leaked special token are seen as ids."""
    import llama_cpp

    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=not added_special, special=True)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    tokens, stop, period = [], None, None
    for token in llm.generate(ids, top_k=1, top_p=0.95, min_p=0.05, temp=0.0, repeat_penalty=1.0):
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            stop = token
            break
        tokens.append(token)
        if len(tokens) % 8 == 0:
            period = loop_period(tokens)
        if len(tokens) >= limit or period:
            break
    text = llm.detokenize(tokens, special=True).decode("utf-8", errors="replace")
    return Generation(tokens, text, stop, period, prompt_tokens=tuple(ids))


def reference_stop_probs(model, stop_ids: list[int], prompt: list[int], reply: list[int]) -> list[float]:
    """For each position after the prompt (before each reply token, and after the last), the probability that
    ``model`` (an HF causal LM) puts on its end-of-generation tokens ``stop_ids``: one teacher-forced pass."""
    import torch

    ids = torch.tensor([list(prompt) + list(reply)], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1:].float()
    return torch.softmax(logits, dim=-1)[:, stop_ids].sum(dim=-1).tolist()


def first_leak(reply: Generation, template_ids: dict[str, int]) -> int | None:
    """Where the first template token id sits among ``reply``'s tokens (None: no token-id leak)."""
    ids = set(template_ids.values())
    return next((k for k, t in enumerate(reply.tokens) if t in ids), None)


def score_run_ons(target: Target, replies: list[Generation],
                  template_ids: dict[str, int] | None = None) -> list[Generation]:
    """``replies`` scored against the HF model the file was exported from (loaded only when needed): on each
    that ran to the limit ``reference_stop``; on each holding a template token (with ``template_ids``)
    ``reference_leak``, whether the HF model, fed the same prefix, would greedily emit that token there too.
    No reference named: left unset, and such a reply fails."""
    ran_on = [i for i, g in enumerate(replies) if g.stop_token is None and not g.loop_period]
    leaks = {i: k for i, g in enumerate(replies) if (k := first_leak(g, template_ids or {})) is not None}
    if not (ran_on or leaks) or not target.reference:
        return replies
    import torch

    from rulebound.generate import load_hf_model, stop_ids

    # fp32 as the HF evaluation loads it; a model whose weights pass REFERENCE_FP32_BYTES (a 3B and up) loads in
    # bf16, half the memory on a CPU node (not measured against fp32 on such a model).
    size = sum(f.stat().st_size for f in Path(target.reference).glob("*.safetensors"))
    dtype = torch.float32 if size <= REFERENCE_FP32_BYTES else torch.bfloat16
    model, tokenizer = load_hf_model(target.reference, target.reference_adapter, dtype=dtype)
    ids = stop_ids(model, tokenizer)
    out = list(replies)
    for i in ran_on:
        probs = reference_stop_probs(model, ids, replies[i].prompt_tokens, replies[i].tokens)
        out[i] = replace(replies[i], reference_stop=max(probs))
    if ran_on:
        log.info("%s: %d replies ran to the limit; the HF model %s%s, fed them, gives its end tokens at most %s",
                 target.file, len(ran_on), target.reference,
                 f" + {target.reference_adapter}" if target.reference_adapter else "",
                 ", ".join(f"{out[i].reference_stop:.3f}" for i in ran_on))
    for i, k in leaks.items():
        out[i] = replace(out[i], reference_leak=reference_greedy_token(model, replies[i].prompt_tokens,
                                                                       replies[i].tokens[:k]) == replies[i].tokens[k])
    if leaks:
        log.info("%s: %d replies hold a template token; the HF model's greedy choice there is the same in %d",
                 target.file, len(leaks), sum(bool(out[i].reference_leak) for i in leaks))
    del model
    return out


def reference_greedy_token(model, prompt: list[int], prefix: list[int]) -> int:
    """The token ``model`` (an HF causal LM) would greedily emit after ``prompt`` + ``prefix``."""
    import torch

    ids = torch.tensor([list(prompt) + list(prefix)], device=model.device)
    with torch.no_grad():
        return int(model(input_ids=ids).logits[0, -1].argmax())


def judge_generations(file: str, chats: list[list[dict]], replies: list[Generation], *, limit: int,
                      template_ids: dict[str, int]) -> dict:
    """Every reply must stop on an end-of-generation token within ``limit``, or end in the model's own repetition
    loop, or run on where the HF model would not stop either (``reference_stop`` below ``STOP_PROB``); both are
    counted in the detail. No reply may hold a template token, unless the HF model's own greedy choice at the
    first one is that token (``reference_leak``): then the model writes it, not the file, and the detail says so."""
    ran_on = [i for i, g in enumerate(replies) if g.stop_token is None and not g.loop_period]
    own = [i for i in ran_on if replies[i].reference_stop is not None and replies[i].reference_stop < STOP_PROB]
    ran_on = [i for i in ran_on if i not in own]
    loops = [i for i, g in enumerate(replies) if g.loop_period]
    leaked, own_leaks = {}, {}
    for i, g in enumerate(replies):
        found = sorted({t for t, tid in template_ids.items() if tid in g.tokens or t in g.text})
        if found:
            (own_leaks if g.reference_leak else leaked)[i] = found
    longest = max((len(g.tokens) for g in replies if g.stop_token is not None), default=0)
    problems = []
    if ran_on:
        i = ran_on[0]
        g = replies[i]
        why = ("no HF model to compare with" if g.reference_stop is None else
               f"where the HF model it was exported from ends its turn (p {g.reference_stop:.2f} >= {STOP_PROB})")
        problems.append(f"{len(ran_on)} of {len(replies)} replies ran to the {limit}-token limit without stopping "
                        f"or looping, {why} (first: {chat_label(chats[i])} ... {g.text[-60:]!r})")
    if leaked:
        i = next(iter(leaked))
        why = ("" if replies[i].reference_leak is None else
               ", where the HF model it was exported from would not emit it")
        problems.append(f"{len(leaked)} of {len(replies)} replies hold template tokens {leaked[i]}{why} "
                        f"(first: {chat_label(chats[i])} -> {replies[i].text[:80]!r})")
    if problems:
        return row(file, "generation", False, "; ".join(problems))
    stopped = len(replies) - len(loops) - len(own)
    detail = (f"{stopped} of {len(replies)} greedy replies stopped at end of turn (longest {longest} tokens, limit "
              f"{limit}), " + ("none leaked a template token" if not own_leaks else
                               f"{len(own_leaks)} hold template tokens as the HF model does too (the model's own "
                               f"behaviour, not the file's; first: {chat_label(chats[next(iter(own_leaks))])} -> "
                               f"{replies[next(iter(own_leaks))].text[:60]!r})"))
    if loops:
        i = loops[0]
        detail += (f"; {len(loops)} fell into the model's own repetition loop, cut there (first: {chat_label(chats[i])}"
                   f", period {replies[i].loop_period} tokens: {replies[i].text[-60:]!r})")
    if own:
        i = own[0]
        detail += (f"; {len(own)} ran on to the limit as the HF model does too (its end tokens at most "
                   f"p {max(replies[j].reference_stop for j in own):.2f} along them; first: {chat_label(chats[i])})")
    return row(file, "generation", True, detail)


def generate_all(target: Target, chats: list[list[dict]], meta: dict, *, limit: int, n_ctx: int,
                 threads: int) -> tuple[list[Generation], object]:
    """Greedy replies to every chat from the target as llama.cpp loads it (LoRA applied); and the loaded model."""
    from rulebound.generate import open_gguf

    prompts = render_like_llama_cpp(meta["chat_template"], chats, bos=meta["bos_token"], eos=meta["eos_token"])
    llm = open_gguf(target.gguf, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                    lora_path=target.lora)
    start = time.perf_counter()
    replies = [greedy_reply(llm, p, limit=limit) for p in prompts]
    log.info("%s: %d greedy replies (%d tokens) in %.1f s", target.file, len(replies),
             sum(len(g.tokens) for g in replies), time.perf_counter() - start)
    return replies, llm


# --------------------------------------------------------------------------- Ollama Modelfile


def parse_modelfile(text: str) -> dict:
    """FROM, ADAPTER, TEMPLATE, SYSTEM and the stop parameters of a Modelfile (None/[] where absent)."""
    def one(pattern):
        m = re.search(pattern, text, flags=re.M | re.S)
        return m.group(1) if m else None

    stops = [json.loads(v) for v in re.findall(r'^PARAMETER\s+stop\s+(".*")\s*$', text, flags=re.M)]
    return {"from": one(r"^FROM\s+(.+?)\s*$"), "adapter": one(r"^ADAPTER\s+(.+?)\s*$"),
            "template": one(r'^TEMPLATE\s+"""(.*?)"""'), "system": one(r'^SYSTEM\s+"""(.*?)"""'), "stops": stops}


PIECES = [f.name for f in fields(TemplatePieces) if f.type in ("str", str) and f.name != "default_system"]


def parse_go_template(text: str) -> TemplatePieces | None:
    """The per-role pieces of a TEMPLATE of the shape ``rulebound.export.ollama.go_template`` writes; None if
    it has another shape (written by hand), in which case it cannot be checked here."""
    # (system_always, system_in_loop): ChatML-like today, Llama 3, and the older ChatML-like translation
    for always, in_loop in ((False, True), (True, False), (False, False)):
        marks = {name: f"\x00{i}\x00" for i, name in enumerate(PIECES)}
        skeleton = go_template(TemplatePieces(**marks, default_system="", system_always=always,
                                              system_in_loop=in_loop))
        pattern = re.escape(skeleton)
        for name, mark in marks.items():
            pattern = pattern.replace(re.escape(mark), f"(?P<{name}>.*?)", 1)
        m = re.fullmatch(pattern, text, flags=re.S)
        if m:
            return TemplatePieces(**m.groupdict(), default_system="", system_always=always, system_in_loop=in_loop)
    return None


def same_path(written: str | None, expected: str | None, modelfile: Path) -> bool:
    if not written or not expected:
        return written == expected
    return (modelfile.parent / written).resolve() == Path(expected).resolve()


def check_modelfile_template(target: Target, meta: dict, chats: list[list[dict]], text: str) -> dict:
    """FROM/ADAPTER name the target; TEMPLATE and SYSTEM format the chats as the GGUF's template does."""
    file, modelfile = target.file, Path(target.modelfile)
    parsed = parse_modelfile(text)
    if not same_path(parsed["from"], target.gguf, modelfile) or not same_path(parsed["adapter"], target.lora,
                                                                             modelfile):
        return row(file, "modelfile_template", False, f"{modelfile} has FROM {parsed['from']} ADAPTER "
                                                      f"{parsed['adapter']}, not {target.gguf} / {target.lora}")
    if parsed["template"] is None:
        return row(file, "modelfile_template", False, f"{modelfile} has no TEMPLATE: Ollama would guess the format")
    pieces = parse_go_template(parsed["template"])
    if pieces is None:
        return row(file, "modelfile_template", False, f"{modelfile}'s TEMPLATE is not the shape rulebound writes "
                                                      "(edited by hand?), so it cannot be checked")
    pieces = replace(pieces, default_system=parsed["system"] or "")
    template, eos = meta["chat_template"] or "", meta["eos_token"] or ""
    try:
        expected = [render_jinja(template, chat, eos=eos) for chat in chats]
    except Exception as exc:
        return row(file, "modelfile_template", False, f"the GGUF's template fails to render ({exc})")
    got = [render_pieces(pieces, chat) for chat in chats]
    differ = [i for i, (a, b) in enumerate(zip(got, expected)) if a != b]
    if differ:
        i = differ[0]
        return row(file, "modelfile_template", False,
                   f"{len(differ)} of {len(chats)} chats render differently through the Modelfile's TEMPLATE; first "
                   f"({chat_label(chats[i])}): Ollama {got[i]!r} vs GGUF {expected[i]!r}")
    try:  # also what the GGUF's template translates to today: a stale Modelfile shows here
        current = probe_chat_template(template, eos)
    except RuleboundError as exc:
        return row(file, "modelfile_template", False, str(exc))
    if replace(current, default_system="") != replace(pieces, default_system="") \
            or current.default_system != (parsed["system"] or ""):
        return row(file, "modelfile_template", False, "the Modelfile's TEMPLATE/SYSTEM is not the translation of "
                                                      "this GGUF's chat template (stale Modelfile?)")
    return row(file, "modelfile_template", True, f"FROM/ADAPTER name this file; TEMPLATE and SYSTEM format "
                                                 f"{len(chats)} chats as the GGUF's template does")


def check_modelfile_stop(target: Target, meta: dict, text: str) -> dict:
    stops = parse_modelfile(text)["stops"]
    try:
        eot = end_of_turn_token(meta["chat_template"] or "", meta["special_tokens"], meta["bos_token"],
                                meta["eos_token"])
    except RuleboundError as exc:
        return row(target.file, "modelfile_stop", False, str(exc))
    missing = [t for t in dict.fromkeys([eot, meta["eos_token"]]) if t and t not in stops]
    foreign = [t for t in stops if t not in meta["special_tokens"]]
    problems = ([f"lacks stop {missing}"] if missing else []) + \
               ([f"stops on {foreign}, which are not special tokens of the GGUF"] if foreign else [])
    detail = f"stop {stops}" + (f": {'; '.join(problems)}" if problems else f" hold end-of-turn {eot!r} and eos")
    return row(target.file, "modelfile_stop", not problems, detail)


# --------------------------------------------------------------------------- one file, all files


def generation_sample(chats: list[list[dict]], max_generations: int | None) -> list[list[dict]]:
    """The chats the generation check decodes: all of them, or ``max_generations`` spread evenly over the
    evaluation's order (its groups and edge cases come in blocks, so each block is drawn from), plus
    ``EXTRA_CHATS`` (a system turn and a multi-turn chat) always."""
    extra = [c for c in EXTRA_CHATS if c in chats]
    own = [c for c in chats if c not in extra]
    if max_generations is not None and len(own) > max_generations:
        step = len(own) / max_generations
        own = [own[int(i * step)] for i in range(max_generations)]
    return own + extra


def check_target(target: Target, tokenizer, chats: list[list[dict]], *, limit: int = MIN_TOKEN_LIMIT,
                 n_ctx: int = 1024, threads: int = 1, max_generations: int | None = None) -> list[dict]:
    """Every check's row for one exported file (the LoRA GGUF's template and tokens are its base's). The
    templates are compared on every chat; greedy replies are decoded for ``generation_sample`` of them."""
    import llama_cpp

    meta = read_metadata(target.gguf)
    rows = [check_chat_template(target.file, meta, tokenizer, chats), check_eos(target.file, meta, tokenizer)]
    if meta["chat_template"]:
        decoded = generation_sample(chats, max_generations)
        replies, llm = generate_all(target, decoded, meta, limit=limit, n_ctx=n_ctx, threads=threads)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        rows.append(check_end_of_turn(target.file, meta, tokenizer,
                                      lambda i: bool(llama_cpp.llama_vocab_is_eog(vocab, i))))
        template_ids = template_tokens(meta)
        replies = score_run_ons(target, replies, template_ids)
        rows.append(judge_generations(target.file, decoded, replies, limit=limit, template_ids=template_ids))
        llm.close()
    else:
        rows += [row(target.file, c, False, "not checked: the GGUF has no chat template")
                 for c in ("end_of_turn_token", "generation")]
    if target.modelfile:
        if Path(target.modelfile).is_file():
            text = Path(target.modelfile).read_text(encoding="utf-8")
            rows += [check_modelfile_template(target, meta, chats, text), check_modelfile_stop(target, meta, text)]
        else:
            rows += [row(target.file, c, False, f"{target.modelfile} does not exist")
                     for c in ("modelfile_template", "modelfile_stop")]
    for r in rows:
        log.info("%s %s %s: %s", "PASS" if r["passed"] else "FAIL", r["file"], r["check"], r["detail"])
    return rows


def check_conformance(targets, tokenizer_dir: str | os.PathLike, chats: list[list[dict]], *,
                      limit: int = MIN_TOKEN_LIMIT, n_ctx: int = 1024, threads: int = 1,
                      max_generations: int | None = None) -> pd.DataFrame:
    """The conformance table of every target against the HF tokenizer in ``tokenizer_dir``, on ``chats``
    (an experiment's evaluation chats; ``EXTRA_CHATS`` are added: a system turn and a multi-turn chat).
    ``max_generations`` bounds the chats decoded per file (None: every chat); see ``generation_sample``."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    chats = [list(c) for c in chats] + [c for c in EXTRA_CHATS if c not in chats]
    n_ctx = max(n_ctx, 2 * limit)  # room for the longest prompt and a reply up to the limit
    rows = []
    for target in targets:
        target = target if isinstance(target, Target) else Target.from_mapping(target)
        rows += check_target(target, tokenizer, chats, limit=limit, n_ctx=n_ctx, threads=threads,
                             max_generations=max_generations)
    return pd.DataFrame(rows, columns=COLUMNS)


def failed_path(out_csv: str | os.PathLike) -> Path:
    out = Path(out_csv)
    return out.with_name(f"{out.stem}.failed{out.suffix}")


def write_conformance(table: pd.DataFrame, out_csv: str | os.PathLike) -> None:
    """Write the table to ``out_csv`` if every check passed; otherwise beside it (``conformance.failed.csv``,
    never a half-right declared output) and raise, naming each failing file, check and what to do."""
    failed = table[~table["passed"].astype(bool)]
    if failed.empty:
        failed_path(out_csv).unlink(missing_ok=True)
        write_csv(table, out_csv)
        log.info("all %d conformance checks passed: %s", len(table), out_csv)
        return
    write_csv(table, failed_path(out_csv))
    lines = [f"- {r.file}: {r.check} failed ({r.detail}). To fix: {FIXES[r.check]}" for r in failed.itertuples()]
    raise RuleboundError(f"{len(failed)} of {len(table)} GGUF conformance checks failed (the whole table is in "
                         f"{failed_path(out_csv)}):\n" + "\n".join(lines))
