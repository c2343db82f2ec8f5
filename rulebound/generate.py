"""Greedy generation from an HF folder (optionally with a PEFT adapter) or from a GGUF file.

Both take conversations (lists of ``{"role", "content"}`` messages) and apply the model's own
chat template, so what is evaluated is what a user of that artifact would get. Both take an optional
``constraint``: an object that a task builds (the lipogram's letter ban is one) and generation applies,
through ``constraint.hf_logits_processor(tokenizer)`` on transformers and ``constraint.llama_kwargs(llm)``
(a grammar or a logits processor) on llama.cpp. Generation itself knows no task.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from rulebound.errors import RuleboundError
from rulebound.progress import Progress

log = logging.getLogger(__name__)

# torch and llama.cpp both use OpenMP, whose workers spin-wait between parallel regions by default. When
# the cores are shared (Snakemake jobs side by side, a busy laptop) that spinning made greedy decoding 5-10x
# slower here (80 prompts: 297 s spinning, 53 s passive). Only effective before torch/llama_cpp load,
# which is why this module imports them lazily; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Constraint(Protocol):
    """What a decoding constraint provides to each generation backend."""

    def hf_logits_processor(self, tokenizer):
        """A transformers ``LogitsProcessor`` for this tokenizer's vocabulary."""

    def llama_kwargs(self, llm) -> dict:
        """Keyword arguments for ``Llama.create_chat_completion`` (``grammar=`` or ``logits_processor=``)."""


def with_system(conversations: list[list[dict]], system_prompt: str | None) -> list[list[dict]]:
    """Each conversation with ``system_prompt`` first, unless it already opens with a system turn."""
    if not system_prompt:
        return [list(c) for c in conversations]
    return [list(c) if c and c[0]["role"] == "system" else [{"role": "system", "content": system_prompt}, *c]
            for c in conversations]


def load_hf_model(model_dir: str | os.PathLike, adapter_dir: str | os.PathLike | None = None, *, dtype=None):
    """Model (fp32 unless ``dtype`` says otherwise, eval mode; on the GPU where there is one) and tokenizer (left
    padding, pad token set)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if not tokenizer.chat_template:
        raise RuleboundError(f"The tokenizer in {model_dir} has no chat template; generation needs one.")
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow the prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype or torch.float32)
    if torch.cuda.is_available():  # the GPU profiles' machines: same fp32 weights, on the GPU
        model.to("cuda")
    if adapter_dir is not None:
        from peft import PeftModel

        # Merging in fp32 is exact up to rounding and makes every forward pass as cheap as the base's.
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.eval()
    return model, tokenizer


def stop_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise RuleboundError("Neither the model nor the tokenizer names an end-of-sequence token.")
    return ids


def hf_generate(model_dir: str | os.PathLike, conversations: list[list[dict]], *,
                adapter_dir: str | os.PathLike | None = None, max_new_tokens: int = 64, batch_size: int = 16,
                threads: int | None = None, system_prompt: str | None = None,
                constraint: Constraint | None = None) -> list[str]:
    """Greedy replies (new text only, special tokens skipped, stripped), in the order of ``conversations``.

    ``constraint`` (see ``Constraint``) restricts decoding, e.g. the lipogram's ban of every token holding a letter.
    """
    import torch

    if not conversations:
        return []
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model, tokenizer = load_hf_model(model_dir, adapter_dir)
        return _generate_sorted(model, tokenizer, with_system(conversations, system_prompt),
                                max_new_tokens=max_new_tokens, batch_size=batch_size,
                                logits_processor=_hf_constraint(tokenizer, constraint))
    finally:
        torch.set_num_threads(previous_threads)  # a library call should not leave the process retuned


def _hf_constraint(tokenizer, constraint: Constraint | None):
    if constraint is None:
        return None
    from transformers import LogitsProcessorList

    return LogitsProcessorList([constraint.hf_logits_processor(tokenizer)])


def _generate_sorted(model, tokenizer, conversations: list[list[dict]], *, max_new_tokens: int,
                     batch_size: int, logits_processor=None) -> list[str]:
    import torch
    from transformers import GenerationConfig

    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    # The template already holds BOS where the model wants one; add_special_tokens would double it.
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # similar lengths share a batch: less padding
    config = GenerationConfig(do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stop_ids(model, tokenizer),
                              pad_token_id=tokenizer.pad_token_id)
    replies: list[str | None] = [None] * len(texts)
    start = time.perf_counter()
    progress = Progress(len(texts), "generated", log)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            enc = tokenizer([texts[i] for i in idx], add_special_tokens=False, padding=True, return_tensors="pt")
            enc = enc.to(model.device)
            out = model.generate(**enc, generation_config=config, logits_processor=logits_processor)
            new = out[:, enc["input_ids"].shape[1]:]
            for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True)):
                replies[i] = text.strip()
            progress.update(len(idx))
    log.info("generated %d replies (max %d new tokens, batch %d) in %.1f s",
             len(texts), max_new_tokens, batch_size, time.perf_counter() - start)
    return replies


def _cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@contextlib.contextmanager
def without_amx_buffers():
    """Wrap ``Llama(...)``: on a CPU with AMX, load weights without llama.cpp's extra CPU buffer types.

    With llama-cpp-python 0.3.36 on an AMX Xeon, any prompt of 2+ tokens on Q4_1, Q8_0 or Q4_K_M weights
    segfaults in the AMX matmul (F16 is fine; ggml-org/llama.cpp#20824). ``Llama()`` has no switch for
    ``use_extra_bufts``, so its default model params are patched while the model loads. Without AMX
    nothing changes and weight repacking stays on. Every ``Llama`` that evaluates prompts needs this.
    """
    if not _cpu_has_amx():
        yield
        return
    import llama_cpp.llama as llama_module

    bindings = llama_module.llama_cpp
    default_params = bindings.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p

    bindings.llama_model_default_params = params
    try:
        yield
    finally:
        bindings.llama_model_default_params = default_params


def open_gguf(gguf_path: str | os.PathLike, **kwargs):
    """``llama_cpp.Llama`` for a GGUF file, loaded so that it can evaluate prompts on any CPU (see above)."""
    from llama_cpp import Llama

    if not Path(gguf_path).is_file():
        raise RuleboundError(f"GGUF file {gguf_path} does not exist.")
    with without_amx_buffers():
        return Llama(model_path=str(gguf_path), **{"verbose": False, **kwargs})


def gguf_generate(gguf_path: str | os.PathLike, conversations: list[list[dict]], *, max_new_tokens: int = 64,
                  n_ctx: int = 2048, threads: int | None = None,
                  lora_path: str | os.PathLike | None = None, constraint: Constraint | None = None) -> list[str]:
    """Greedy replies through llama.cpp's chat completion, with the template stored in the GGUF.

    ``constraint`` restricts decoding as in ``hf_generate``, judged by the GGUF's own vocabulary.
    """

    threads = threads or os.cpu_count()
    llm = open_gguf(gguf_path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                    lora_path=str(lora_path) if lora_path else None)
    if not llm.metadata.get("tokenizer.chat_template"):
        # llama-cpp-python would silently fall back to a generic format: the numbers would be meaningless.
        raise RuleboundError(
            f"{gguf_path} carries no tokenizer.chat_template; re-export it from a model folder whose "
            "tokenizer_config.json (or chat_template.jinja) holds the chat template."
        )
    ban = constraint.llama_kwargs(llm) if constraint is not None else {}
    replies = []
    start = time.perf_counter()
    progress = Progress(len(conversations), "generated", log)
    for messages in conversations:
        result = llm.create_chat_completion(messages=messages, temperature=0.0, top_k=1, max_tokens=max_new_tokens,
                                            seed=0, **ban)
        replies.append((result["choices"][0]["message"]["content"] or "").strip())
        progress.update()
    elapsed = time.perf_counter() - start
    log.info("generated %d replies with %s in %.1f s (%.2f s per prompt)",
             len(replies), Path(gguf_path).name, elapsed, elapsed / max(1, len(replies)))
    return replies
