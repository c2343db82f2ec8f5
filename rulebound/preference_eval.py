"""Held-out preference accuracy: does the model give the chosen answer a higher likelihood than the rejected one?

Each answer is scored by its mean token log-probability given the chat-templated prompt (system and user
messages, ``add_generation_prompt=True``), as ORPO's odds ratio uses it. The scored tokens are the
answer's plus the template's end-of-turn marker (``<|im_end|>`` for ChatML), because that is what the
trainer's completions hold (``rulebound.formatting.format_preferences``) and because a truthful answer
should also be where the model stops. Prompt and answer are tokenized separately and concatenated, so
the HF and GGUF paths score exactly the same tokens (``n_tokens_*`` lets one check that).

Means rather than sums keep a long truthful answer from losing to a short falsehood merely by length.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rulebound.errors import DataError, RuleboundError
from rulebound.formatting import end_of_turn, messages_for
from rulebound.progress import Progress
from rulebound.stats import log_softmax, wilson_interval

log = logging.getLogger(__name__)

# torch and llama.cpp use OpenMP; passive waiting keeps shared cores usable (see rulebound.generate).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SCORE_COLUMNS = ["variant", "pair_id", "category", "logp_chosen", "logp_rejected", "margin", "correct",
                 "n_tokens_chosen", "n_tokens_rejected", "user"]
SUMMARY_COLUMNS = ["variant", "group", "n", "correct", "accuracy", "ci_low", "ci_high", "margin_mean",
                   "margin_median", "margin_q10", "margin_q25", "margin_q75", "margin_q90",
                   "logp_chosen_mean", "logp_rejected_mean"]


def normalize_pairs(pairs_df: pd.DataFrame) -> pd.DataFrame:
    """pair_id, category, system, user, chosen, rejected from a raw or a formatted preference frame.

    Formatted frames (``format_preferences``) keep the user message in ``user`` and a templated ``prompt``;
    raw frames have the user message in ``prompt``. Missing ids and categories get defaults.
    """
    user_col = "user" if "user" in pairs_df.columns else "prompt"
    missing = [c for c in (user_col, "chosen", "rejected") if c not in pairs_df.columns]
    if missing:
        raise DataError(f"Preference pairs lack column {missing[0]!r}; scoring needs prompt (or user), chosen "
                        "and rejected, and optionally system, pair_id and category.")
    df = pairs_df.reset_index(drop=True)
    n = len(df)
    return pd.DataFrame({
        "pair_id": df["pair_id"].astype(str) if "pair_id" in df else [f"pair-{i:05d}" for i in range(n)],
        "category": df["category"].astype(str) if "category" in df else "all",
        "system": df["system"].fillna("").astype(str) if "system" in df else "",
        "user": df[user_col].astype(str), "chosen": df["chosen"].astype(str),
        "rejected": df["rejected"].astype(str)})


def templated_texts(pairs: pd.DataFrame, tokenizer) -> tuple[list[str], list[str], list[str]]:
    """Per pair: the templated prompt and both completions (answer + end-of-turn, added once)."""
    eot = end_of_turn(tokenizer)
    prompts = [tokenizer.apply_chat_template(messages_for(u, s), tokenize=False, add_generation_prompt=True)
               for u, s in zip(pairs["user"], pairs["system"])]

    def close(answer: str) -> str:
        return answer if eot and answer.endswith(eot) else answer + eot

    return prompts, [close(a) for a in pairs["chosen"]], [close(a) for a in pairs["rejected"]]


def _rows(pairs: pd.DataFrame, chosen: list[tuple[float, int]], rejected: list[tuple[float, int]],
          variant: str) -> pd.DataFrame:
    """Score rows from (sum of log-probs, token count) per answer."""
    out = pairs[["pair_id", "category", "user"]].copy()
    out.insert(0, "variant", variant)
    out["logp_chosen"] = [s / n for s, n in chosen]
    out["logp_rejected"] = [s / n for s, n in rejected]
    out["margin"] = out["logp_chosen"] - out["logp_rejected"]
    out["correct"] = out["margin"] > 0
    out["n_tokens_chosen"] = [n for _, n in chosen]
    out["n_tokens_rejected"] = [n for _, n in rejected]
    return out[SCORE_COLUMNS]


def preference_scores_hf(model_dir: str | os.PathLike, pairs_df: pd.DataFrame, adapter_dir=None, batch_size: int = 8,
                         *, variant: str = "hf", threads: int | None = None) -> pd.DataFrame:
    """Score every pair with an HF model (fp32, CPU; a PEFT adapter is merged in): one row per pair.

    ``batch_size`` counts sequences (a pair is two) per forward pass; sequences are right-padded, so
    positions of the real tokens are the same as unpadded.
    """
    import torch

    from rulebound.generate import load_hf_model

    pairs = normalize_pairs(pairs_df)
    if pairs.empty:
        raise DataError("preference_scores_hf got no pairs to score.")
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        model, tokenizer = load_hf_model(model_dir, adapter_dir)
        prompts, chosen, rejected = templated_texts(pairs, tokenizer)

        def ids(texts):
            return tokenizer(texts, add_special_tokens=False)["input_ids"]  # the template holds any BOS

        prompt_ids = ids(prompts)
        sequences = list(zip(prompt_ids, ids(chosen))) + list(zip(prompt_ids, ids(rejected)))
        scores = hf_answer_logps(model, sequences, batch_size=batch_size, pad_id=tokenizer.pad_token_id)
    finally:
        torch.set_num_threads(previous_threads)
    log.info("%s: scored %d pairs in %.1f s", variant, len(pairs), time.perf_counter() - start)
    return _rows(pairs, scores[: len(pairs)], scores[len(pairs):], variant)


def hf_answer_logps(model, sequences: list[tuple[list[int], list[int]]], *, batch_size: int,
                    pad_id: int) -> list[tuple[float, int]]:
    """(sum of log-probs of the answer tokens, number of answer tokens) per (prompt ids, answer ids)."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: -(len(sequences[i][0]) + len(sequences[i][1])))
    out: list[tuple[float, int] | None] = [None] * len(sequences)
    progress = Progress(len(sequences), "scored answers", log)
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            rows = [sequences[i][0] + sequences[i][1] for i in idx]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                input_ids[r, :len(row)] = torch.tensor(row)
                mask[r, :len(row)] = 1
            input_ids, mask = input_ids.to(model.device), mask.to(model.device)  # load_hf_model's device
            logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
            # log p(next token) = its logit - logsumexp over the vocabulary: no (batch, length, vocab) copy
            token_logps = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
            for r, i in enumerate(idx):
                n_prompt, n_answer = len(sequences[i][0]), len(sequences[i][1])
                out[i] = (float(token_logps[r, n_prompt - 1:n_prompt - 1 + n_answer].sum()), n_answer)
            progress.update(len(idx))
    return out


class GGUFChatTemplate:
    """The chat template stored in a GGUF, with the part of a tokenizer's interface the formatting uses."""

    def __init__(self, llm, source: str = "the GGUF"):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise RuleboundError(f"{source} carries no tokenizer.chat_template; re-export it from a model folder "
                                 "whose tokenizer holds the chat template.")
        self.eos_token = _token_text(llm, llm.token_eos())
        self.bos_token = _token_text(llm, llm.token_bos())
        self._render = {flag: Jinja2ChatFormatter(template, eos_token=self.eos_token, bos_token=self.bos_token,
                                                  add_generation_prompt=flag) for flag in (False, True)}

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        if tokenize:
            raise NotImplementedError("GGUFChatTemplate renders text only; tokenize with the Llama object.")
        return self._render[bool(add_generation_prompt)](messages=messages).prompt


def _token_text(llm, token_id: int) -> str:
    return "" if token_id < 0 else llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")


def preference_scores_gguf(gguf_path: str | os.PathLike, pairs_df: pd.DataFrame, n_ctx: int = 1024,
                           lora_path: str | os.PathLike | None = None, *, variant: str = "gguf",
                           threads: int | None = None) -> pd.DataFrame:
    """Score every pair with llama.cpp (``logits_all``), using the chat template stored in the GGUF."""
    from rulebound.generate import open_gguf

    pairs = normalize_pairs(pairs_df)
    if pairs.empty:
        raise DataError("preference_scores_gguf got no pairs to score.")
    for path, what in ((gguf_path, "GGUF file"), (lora_path, "LoRA GGUF file")):
        if path is not None and not Path(path).is_file():
            raise RuleboundError(f"{what} {path} does not exist.")
    start = time.perf_counter()
    llm = open_gguf(gguf_path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=threads or os.cpu_count(),
                    n_threads_batch=threads or os.cpu_count(),
                    lora_path=str(lora_path) if lora_path else None)  # safe on AMX CPUs, see open_gguf
    prompts, chosen, rejected = templated_texts(pairs, GGUFChatTemplate(llm, str(gguf_path)))

    def ids(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    chosen_scores, rejected_scores = [], []
    progress = Progress(len(pairs), "scored pairs", log)
    for pair_id, prompt, good, bad in zip(pairs["pair_id"], prompts, chosen, rejected):
        prompt_ids, good_ids, bad_ids = ids(prompt), ids(good), ids(bad)
        if len(prompt_ids) + max(len(good_ids), len(bad_ids)) > n_ctx:
            raise DataError(f"Pair {pair_id} needs {len(prompt_ids) + max(len(good_ids), len(bad_ids))} tokens, "
                            f"more than n_ctx={n_ctx}; raise evaluate.n_ctx or shorten the pair.")
        good_score, bad_score = gguf_answer_logps(llm, prompt_ids, [good_ids, bad_ids])
        chosen_scores.append(good_score)
        rejected_scores.append(bad_score)
        progress.update()
    log.info("%s: scored %d pairs with %s in %.1f s", variant, len(pairs), Path(gguf_path).name,
             time.perf_counter() - start)
    return _rows(pairs, chosen_scores, rejected_scores, variant)


def gguf_answer_logps(llm, prompt_ids: list[int], answers: list[list[int]]) -> list[tuple[float, int]]:
    """(sum of log-probs, token count) per answer; the prompt is evaluated once and its KV cache reused."""
    llm.reset()
    llm.eval(prompt_ids)
    n_prompt, out = len(prompt_ids), []
    for answer in answers:
        llm.n_tokens = n_prompt  # drop the previous answer; eval() clears the KV cache past this point
        llm.eval(answer)
        # rows n_prompt - 1 .. n_prompt + len - 2 predict the answer's tokens
        logps = log_softmax(np.asarray(llm.scores[n_prompt - 1:n_prompt - 1 + len(answer)]))
        out.append((float(logps[np.arange(len(answer)), answer].sum()), len(answer)))
    return out


def summarize_preferences(scores: pd.DataFrame, *, by_category: bool = False) -> pd.DataFrame:
    """Per variant (and category, if asked): accuracy with a Wilson 95% interval and margin statistics."""
    rows = []
    for variant in scores["variant"].drop_duplicates():
        df = scores[scores["variant"] == variant]
        groups = [("all", df)]
        if by_category:
            groups += [(c, df[df["category"] == c]) for c in sorted(df["category"].astype(str).unique())]
        rows += [_summary_row(variant, name, part) for name, part in groups]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _summary_row(variant: str, group: str, df: pd.DataFrame) -> dict:
    correct = df["correct"].astype(str).str.lower().isin(["true", "1"])  # bools, or strings from a CSV
    n, k = len(df), int(correct.sum())
    low, high = wilson_interval(k, n)
    margin = df["margin"].astype(float)
    q = margin.quantile([0.1, 0.25, 0.75, 0.9]) if n else pd.Series(np.nan, index=[0.1, 0.25, 0.75, 0.9])
    return {"variant": variant, "group": group, "n": n, "correct": k, "accuracy": k / n if n else np.nan,
            "ci_low": low, "ci_high": high, "margin_mean": margin.mean(), "margin_median": margin.median(),
            "margin_q10": q[0.1], "margin_q25": q[0.25], "margin_q75": q[0.75], "margin_q90": q[0.9],
            "logp_chosen_mean": df["logp_chosen"].astype(float).mean(),
            "logp_rejected_mean": df["logp_rejected"].astype(float).mean()}
