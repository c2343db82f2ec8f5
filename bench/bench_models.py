"""Random-init benchmark models with a word-level tokenizer, and the software versions a table reports.

Shared by bench/grpo_throughput.py and bench/sft_throughput.py (bench/orpo_throughput.py keeps its own).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHAPES = {
    # the lipogram preset's model (presets/lipogram-qwen2.5-0.5b.yaml), random init
    "qwen2.5-0.5b": dict(arch="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936, rope_theta=1000000.0,
                         tie_word_embeddings=True),
    # the embedded SmolLM2-135M-Instruct's shape, random init (timing stand-in for the real weights)
    "smollm2-135m": dict(arch="llama", hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, intermediate_size=1536, vocab_size=49152, head_dim=64,
                         rope_theta=100000.0, tie_word_embeddings=True),
    "tiny": dict(arch="llama", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=512, head_dim=16, tie_word_embeddings=True),
}
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]


def build_model_dir(path: Path, shape: str) -> None:
    """Save a random-init bf16 model of ``shape`` with a word-level tokenizer ("t0".."tN") beside it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    dims = dict(SHAPES[shape])
    arch = dims.pop("arch")
    vocab = {t: i for i, t in enumerate(SPECIAL + [f"t{i}" for i in range(dims["vocab_size"] - len(SPECIAL))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    config_cls, model_cls = (Qwen2Config, Qwen2ForCausalLM) if arch == "qwen2" else (LlamaConfig, LlamaForCausalLM)
    config = config_cls(**dims, max_position_embeddings=4096, rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, dtype="bfloat16")
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = model_cls(config).to(torch.bfloat16)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)


def word_tokenizer(vocab_size: int):
    """The word-level tokenizer of these models ("t0".."tN" after 4 special tokens), built in memory.

    Built here rather than loaded from the model folder: on the lent H200 image (2026-12-02) the folder's
    tokenizer.json, loaded back with AutoTokenizer, turned every prompt into no tokens at all (TRL's GRPO and
    SFT then trained on empty rows); the same files load fine elsewhere. Checked before it is used.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + [f"t{i}" for i in range(vocab_size - len(SPECIAL))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    ids = tokenizer("t5 t77")["input_ids"]
    if ids == [9, 81]:
        return tokenizer
    print(f"the fast word-level tokenizer gives {ids} for 't5 t77'; using the pure-Python one", file=sys.stderr)
    tokenizer = PythonWordTokenizer(vocab_size)
    ids = tokenizer("t5 t77")["input_ids"]
    if ids != [9, 81]:
        raise RuntimeError(f"the word-level tokenizer gives {ids} for 't5 t77', not [9, 81]: the benchmark would "
                           "train on wrong rows")
    return tokenizer


def _python_word_tokenizer_class():
    from transformers import PreTrainedTokenizer

    class PythonWordTokenizer(PreTrainedTokenizer):
        """The same word-level vocabulary as a slow (pure-Python) tokenizer."""

        def __init__(self, vocab_size: int, **kwargs):
            self.n = vocab_size
            super().__init__(pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>", **kwargs)

        @property
        def vocab_size(self):
            return self.n

        def get_vocab(self):
            return {**{t: i for i, t in enumerate(SPECIAL)}, **{f"t{i}": i + 4 for i in range(self.n - 4)}}

        def _tokenize(self, text, **kwargs):
            return text.split()

        def _convert_token_to_id(self, token):
            if token in SPECIAL:
                return SPECIAL.index(token)
            if token[:1] == "t" and token[1:].isdigit() and int(token[1:]) < self.n - 4:
                return int(token[1:]) + 4
            return 3

        def _convert_id_to_token(self, index):
            return SPECIAL[index] if index < 4 else f"t{index - 4}"

        def convert_tokens_to_string(self, tokens):
            return " ".join(tokens)

        def save_vocabulary(self, save_directory, filename_prefix=None):
            return ()

    return PythonWordTokenizer


def PythonWordTokenizer(vocab_size: int):  # noqa: N802 (a class made on first use: transformers loads late)
    return _python_word_tokenizer_class()(vocab_size)


def model_dir_for(shape: str, root: Path, real: str | None = None) -> Path:
    """The benchmark model folder: a real HF folder when given, else the random-init shape (built once)."""
    if real:
        return Path(real)
    path = root / f"rulebound-bench-{shape}"
    if not path.exists():
        build_model_dir(path, shape)
    return path


def is_word_model(model_dir: Path) -> bool:
    """Whether the folder holds one of these random word-level models (no chat template, words t0..tN)."""
    config = Path(model_dir) / "tokenizer_config.json"
    return config.is_file() and "chat_template" not in json.loads(config.read_text()) and \
        not (Path(model_dir) / "chat_template.jinja").exists()


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "unsloth", "unsloth_zoo", "bitsandbytes",
                 "liger_kernel"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    out["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return out


def matmul_params(model) -> int:
    """Parameters that take part in matmuls per token (lm_head included once; embeddings and LoRA left out)."""
    n = sum(p.numel() for name, p in model.named_parameters()
            if p.dim() == 2 and "embed_tokens" not in name and "lora_" not in name)
    if model.config.tie_word_embeddings or not any("lm_head" in name for name, _ in model.named_parameters()):
        n += model.config.vocab_size * model.config.hidden_size
    return n
