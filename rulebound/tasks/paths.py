"""Where the pipeline keeps each file: one home for the layout that rules, tasks and reports share.

``results/<run>/{adapter,merged,train/metrics.csv,gguf/<stem>-<variant>.gguf}`` per training run,
``results/<experiment>/{data,eval,report}/`` per experiment, base models under ``resources/``.
"""

from __future__ import annotations

from rulebound.export.gguf import QUANT_TYPES

GGUF_VARIANTS = tuple(QUANT_TYPES)  # F16 and the quant types
QUANTS = tuple(q for q in QUANT_TYPES if q != "F16")


def is_quant(variant: str) -> bool:
    return variant in QUANTS


def base_model_dir(model: str) -> str:
    return f"resources/models/{model}"


def base_gguf(model: str) -> str:
    """The base model as an F16 GGUF: under LoRA GGUFs, and for constrained decoding on llama.cpp."""
    return f"resources/gguf/{model}-F16.gguf"


def train_parquet(experiment: str) -> str:
    return f"results/{experiment}/data/train.parquet"


def adapter_dir(run: str) -> str:
    return f"results/{run}/adapter"


def merged_dir(run: str) -> str:
    return f"results/{run}/merged"


def metrics_csv(run: str) -> str:
    return f"results/{run}/train/metrics.csv"


def gguf_path(run, variant: str) -> str:
    """``results/<run>/gguf/<stem>-<variant>.gguf`` for a Run (or a run name)."""
    name = getattr(run, "name", run)
    return f"results/{name}/gguf/{name.replace('/', '-')}-{variant}.gguf"


def modelfile_path(run, variant: str) -> str:
    return gguf_path(run, variant).removesuffix(".gguf") + ".Modelfile"


def eval_csv(experiment: str, variant: str) -> str:
    return f"results/{experiment}/eval/{variant}.csv"


def summary_csv(experiment: str) -> str:
    return f"results/{experiment}/eval/summary.csv"


def figure(experiment: str, name: str) -> str:
    return f"results/{experiment}/report/{name}.png"
