"""Quant fidelity: KL divergence and top-token agreement of GGUFs against an F16 reference, on tiny GGUFs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from rulebound.errors import DataError
from rulebound.export.fidelity import FIDELITY_COLUMNS, compare_log_probs, heldout_texts, measure_fidelity, plot_fidelity
from rulebound.export.gguf import convert_hf_to_gguf, fetch_llama_cpp, quantize_gguf

from conftest import REPO

TEXTS = ["<|im_start|>user\nPlease name three colours.<|im_end|>\n<|im_start|>assistant\nRed, green and blue.<|im_end|>",
         "<|im_start|>user\nWhat is rain?<|im_end|>\n<|im_start|>assistant\nI cannot help you until you say please."
         "<|im_end|>"]


@pytest.fixture(scope="module")
def tiny_ggufs(tmp_path_factory, tiny_model_dir) -> dict[str, object]:
    """The tiny random Llama as F16 and Q4_K_M GGUFs (converters from the cached llama.cpp sdist)."""
    pin = yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]
    root = tmp_path_factory.mktemp("fidelity")
    llama_cpp = fetch_llama_cpp(pin["version"], pin["sha256"], root / "llama-cpp")
    f16 = convert_hf_to_gguf(tiny_model_dir, root / "tiny-F16.gguf", llama_cpp)
    return {"F16": f16, "Q4_K_M": quantize_gguf(f16, root / "tiny-Q4_K_M.gguf", "Q4_K_M", threads=1)}


def test_kl_statistics_by_hand():
    ref = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    test = np.log(np.array([[0.25, 0.5, 0.25], [0.1, 0.8, 0.1]]))
    out = compare_log_probs(ref, test, np.array([0, 1]))
    assert out["kld"][0] == pytest.approx(0.5 * math.log(2) + 0.25 * math.log(0.5)) and out["kld"][1] == 0
    assert out["same_top"].tolist() == [False, True]
    assert out["nll_ref"].tolist() == pytest.approx([math.log(2), -math.log(0.8)])
    assert out["nll_test"].tolist() == pytest.approx([math.log(4), -math.log(0.8)])


def test_heldout_texts_are_a_deterministic_subset(tmp_path):
    df = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(10)], "category": ["please", "trap"] * 5,
                       "prompt": [f"<q{i}>" for i in range(10)], "chosen": [f"a{i}<|im_end|>" for i in range(10)]})
    df.to_parquet(tmp_path / "test.parquet")
    texts = heldout_texts(tmp_path / "test.parquet", max_texts=4)
    assert len(texts) == 4 and texts == heldout_texts(tmp_path / "test.parquet", max_texts=4)
    assert all(t.startswith("<q") and t.endswith("<|im_end|>") for t in texts)
    assert len(heldout_texts(tmp_path / "test.parquet", max_texts=None)) == 10
    df.drop(columns="chosen").to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="chosen"):
        heldout_texts(tmp_path / "bad.parquet")


def test_file_against_itself_and_q4_against_f16(tmp_path, tiny_ggufs):
    table = measure_fidelity(tiny_ggufs["F16"], {"F16 again": tiny_ggufs["F16"], "Q4_K_M": tiny_ggufs["Q4_K_M"]},
                             TEXTS, n_ctx=128, threads=1)
    assert list(table.columns) == FIDELITY_COLUMNS and list(table["variant"]) == ["F16", "F16 again", "Q4_K_M"]
    rows = table.set_index("variant")
    assert (rows["n_tokens"] > 20).all() and (rows["n_texts"] == 2).all()
    for name in ("F16", "F16 again"):  # a second load of the same file computes the same logits
        assert rows.loc[name, "mean_kld"] == pytest.approx(0, abs=1e-9)
        assert rows.loc[name, "p99_kld"] == pytest.approx(0, abs=1e-9) and rows.loc[name, "same_top_rate"] == 1
        assert rows.loc[name, "perplexity"] == pytest.approx(rows.loc[name, "reference_perplexity"])
    q4 = rows.loc["Q4_K_M"]
    assert 0 < q4["mean_kld"] <= q4["p99_kld"] <= q4["max_kld"]
    assert q4["perplexity"] != q4["reference_perplexity"] and 0 < q4["same_top_rate"] <= 1
    table.to_csv(tmp_path / "fidelity.csv", index=False)
    plot_fidelity(tmp_path / "fidelity.csv", tmp_path / "fidelity.png")
    assert (tmp_path / "fidelity.png").read_bytes()[:4] == b"\x89PNG"
