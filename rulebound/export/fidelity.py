"""Quantization fidelity: how far each quant GGUF's next-token distributions drift from the F16 GGUF.

The numbers are the ones llama.cpp's ``llama-perplexity --kl-divergence`` reports: mean and 99th
percentile of the per-token KL divergence KL(F16 || quant), the rate at which both pick the same top
token, and each file's perplexity, here on held-out chats (the test split's prompts with their chosen
answers, rendered through the chat template) rather than on wikitext, so they measure the text the
model is used for.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pandas as pd

from rulebound.errors import DataError
from rulebound.io import atomic_path, read_table, write_csv
from rulebound.stats import log_softmax, select_prompts

log = logging.getLogger(__name__)

# Generation and llama.cpp use OpenMP; passive waiting keeps shared cores usable (see rulebound.generate).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

FIDELITY_COLUMNS = ["variant", "reference", "n_texts", "n_tokens", "perplexity", "reference_perplexity",
                    "mean_kld", "median_kld", "p99_kld", "max_kld", "same_top_rate"]


def heldout_texts(test_parquet: str | os.PathLike, max_texts: int | None = 32) -> list[str]:
    """The test split's templated prompts with their chosen answers: a deterministic subset."""
    df = select_prompts(read_table(test_parquet, ["prompt_id", "category", "prompt", "chosen"], "quant fidelity"),
                        max_texts)
    return (df["prompt"] + df["chosen"]).tolist()


def _load(gguf_path, n_ctx: int, threads: int | None):
    from rulebound.generate import open_gguf

    threads = threads or os.cpu_count()
    return open_gguf(gguf_path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=threads,
                     n_threads_batch=threads)


def token_log_probs(llm, tokens: list[int]) -> np.ndarray:
    """Log-probabilities of the next token at every position but the last: (len(tokens) - 1, vocab)."""
    llm.reset()
    llm.eval(tokens)
    return log_softmax(np.asarray(llm.scores[: len(tokens) - 1]))


def compare_log_probs(ref: np.ndarray, test: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per position: KL(ref || test), whether the top tokens agree, and both NLLs of the actual next token."""
    kld = (np.exp(ref) * (ref - test)).sum(axis=-1)
    rows = np.arange(len(targets))
    return {"kld": np.maximum(kld, 0.0),  # rounding can make a zero divergence slightly negative
            "same_top": ref.argmax(axis=-1) == test.argmax(axis=-1),
            "nll_ref": -ref[rows, targets], "nll_test": -test[rows, targets]}


def _summary(variant: str, reference: str, n_texts: int, parts: list[dict]) -> dict:
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return {"variant": variant, "reference": reference, "n_texts": n_texts, "n_tokens": len(cat["kld"]),
            "perplexity": math.exp(cat["nll_test"].mean()), "reference_perplexity": math.exp(cat["nll_ref"].mean()),
            "mean_kld": cat["kld"].mean(), "median_kld": float(np.median(cat["kld"])),
            "p99_kld": float(np.percentile(cat["kld"], 99)), "max_kld": cat["kld"].max(),
            "same_top_rate": cat["same_top"].mean()}


def measure_fidelity(reference_gguf, variant_ggufs: dict[str, str | os.PathLike], texts: list[str], *,
                     reference: str = "F16", n_ctx: int = 512, threads: int | None = None) -> pd.DataFrame:
    """One row per variant (the reference first, against itself) with llama-perplexity's KL statistics.

    All files are loaded at once (memory: the sum of their sizes, memory-mapped) so the reference's
    logits, vocabulary-wide per position, are computed once per text and never stored for all texts.
    Texts are tokenized once, with the reference's vocabulary, so every file sees the same tokens;
    texts longer than ``n_ctx`` tokens are cut to it.
    """
    if not texts:
        raise DataError("measure_fidelity needs at least one text.")
    ref_llm = _load(reference_gguf, n_ctx, threads)
    others = {name: _load(path, n_ctx, threads) for name, path in variant_ggufs.items()}
    results: dict[str, list[dict]] = {reference: [], **{name: [] for name in others}}
    used = 0
    for text in texts:
        tokens = ref_llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)[:n_ctx]
        if len(tokens) < 2:
            continue
        used += 1
        targets = np.asarray(tokens[1:])
        ref = token_log_probs(ref_llm, tokens)
        results[reference].append(compare_log_probs(ref, ref, targets))
        for name, llm in others.items():
            results[name].append(compare_log_probs(ref, token_log_probs(llm, tokens), targets))
    if not used:
        raise DataError("Every held-out text is shorter than two tokens; nothing to compare.")
    rows = [_summary(name, reference, used, parts) for name, parts in results.items()]
    for row in rows:
        log.info("%s vs %s: %d tokens, PPL %.3f (ref %.3f), mean KLD %.5f, p99 KLD %.5f, same top %.4f",
                 row["variant"], reference, row["n_tokens"], row["perplexity"], row["reference_perplexity"],
                 row["mean_kld"], row["p99_kld"], row["same_top_rate"])
    return pd.DataFrame(rows, columns=FIDELITY_COLUMNS)


def write_fidelity(test_parquet, reference_gguf, variant_ggufs: dict[str, str | os.PathLike], out_csv, *,
                   max_texts: int | None = 32, n_ctx: int = 512, threads: int | None = None) -> pd.DataFrame:
    texts = heldout_texts(test_parquet, max_texts)
    log.info("measuring %s against %s on %d held-out chats", ", ".join(variant_ggufs), reference_gguf, len(texts))
    table = measure_fidelity(reference_gguf, variant_ggufs, texts, n_ctx=n_ctx, threads=threads)
    write_csv(table, out_csv)
    return table


def plot_fidelity(fidelity_csv, out_png) -> None:
    """Mean and 99th-percentile KL divergence, and same-top-token rate, per variant."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    table = pd.read_csv(fidelity_csv)
    fig, (kl_ax, top_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    xs = np.arange(len(table))
    kl_ax.bar(xs - 0.2, table["mean_kld"], 0.4, label="mean")
    kl_ax.bar(xs + 0.2, table["p99_kld"], 0.4, label="99th percentile")
    kl_ax.set_xticks(xs, table["variant"])
    kl_ax.set_ylabel(f"KL divergence vs {table['reference'].iloc[0]} (nats)")
    kl_ax.set_title("Next-token KL divergence")
    kl_ax.legend(fontsize=8)
    top_ax.bar(xs, table["same_top_rate"], 0.5)
    top_ax.set_xticks(xs, table["variant"])
    top_ax.set_ylim(0, 1.05)
    top_ax.set_title("Same top token")
    for x, (rate, ppl) in enumerate(zip(table["same_top_rate"], table["perplexity"])):
        top_ax.annotate(f"{rate:.3f}\nPPL {ppl:.2f}", (x, min(rate, 1.0) / 2), ha="center", fontsize=7, color="white")
    for ax in (kl_ax, top_ax):
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Quantization fidelity ({int(table['n_tokens'].iloc[0])} held-out tokens)")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
