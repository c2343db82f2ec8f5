"""Merge a LoRA adapter into its base model, always in 16-bit.

The base is reloaded from its own folder in float16/bfloat16 even when the adapter was trained on a
4-bit base (QLoRA): merging into 4-bit weights bakes the quantization error into the model, and
every GGUF quantized from it afterwards pays twice.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from rulebound.errors import ConfigError, RuleboundError
from rulebound.io import atomic_path

log = logging.getLogger(__name__)

MERGE_DTYPES = ("float16", "bfloat16")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_dir(adapter_dir: Path) -> dict:
    """Return the adapter's config; raise if the folder is not a PEFT LoRA adapter."""
    if not adapter_dir.is_dir():
        raise RuleboundError(f"Adapter folder {adapter_dir} does not exist; run the training rule first.")
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.is_file() or not any((adapter_dir / name).is_file() for name in ADAPTER_WEIGHTS):
        raise RuleboundError(
            f"{adapter_dir} is not a PEFT adapter folder: it needs adapter_config.json and "
            f"{' or '.join(ADAPTER_WEIGHTS)} (as written by PeftModel.save_pretrained)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RuleboundError(f"{config_file} is not valid JSON ({exc}); retrain or restore the adapter.") from exc
    if config.get("peft_type") != "LORA":
        raise RuleboundError(f"{adapter_dir} holds a {config.get('peft_type')!r} adapter; only LoRA can be merged.")
    return config


def check_base_dir(base_dir: Path) -> None:
    """The base must be a 16/32-bit HF folder: a pre-quantized checkpoint cannot be merged into."""
    config_file = base_dir / "config.json"
    if not config_file.is_file():
        raise RuleboundError(f"Base model folder {base_dir} has no config.json; run the prepare_model rule first.")
    quant = json.loads(config_file.read_text(encoding="utf-8")).get("quantization_config")
    if quant:
        raise RuleboundError(
            f"The base model at {base_dir} is a pre-quantized checkpoint "
            f"({quant.get('quant_method', 'unknown method')}); merging into quantized weights loses precision "
            "and cannot be converted to GGUF. Use the 16-bit original as the model source "
            "(train with train.load_in_4bit: true if you need QLoRA)."
        )


def merge_adapter(base_dir, adapter_dir, out_dir, dtype: str = "float16") -> None:
    """Merge the LoRA adapter at ``adapter_dir`` into the base at ``base_dir``; write an HF folder.

    ``out_dir`` receives safetensors weights, config, generation_config, the base's tokenizer and
    chat template (the template the training data was formatted with), written atomically.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from rulebound.models import check_model_dir

    if dtype not in MERGE_DTYPES:
        raise ConfigError(f"export.merged_dtype must be one of {', '.join(MERGE_DTYPES)}, got {dtype!r}.")
    base_dir, adapter_dir = Path(base_dir), Path(adapter_dir)
    adapter_config = check_adapter_dir(adapter_dir)
    check_base_dir(base_dir)
    log.info("Merging %s (r=%s) into %s in %s", adapter_dir, adapter_config.get("r"), base_dir, dtype)

    torch_dtype = getattr(torch, dtype)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype, low_cpu_mem_usage=True)
    model = _load_adapter(PeftModel, base, base_dir, adapter_dir)
    merged = model.merge_and_unload()
    merged = merged.to(torch_dtype)
    merged.config.dtype = dtype
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    with atomic_path(out_dir, is_dir=True) as tmp:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if tokenizer.chat_template and not (tmp / "chat_template.jinja").is_file():
            (tmp / "chat_template.jinja").write_text(tokenizer.chat_template, encoding="utf-8")
        if (base_dir / "generation_config.json").is_file():
            GenerationConfig.from_pretrained(base_dir).save_pretrained(tmp)
        check_model_dir(tmp)
    log.info("Merged model written to %s", os.fspath(out_dir))


def _load_adapter(peft_model_cls, base, base_dir: Path, adapter_dir: Path):
    """Attach the adapter; turn PEFT's shape errors and silent partial loads into one clear error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = peft_model_cls.from_pretrained(base, adapter_dir)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise RuleboundError(
                f"The adapter at {adapter_dir} does not fit the base model at {base_dir}: "
                f"{_first_line(exc)}. Merge it into the base it was trained on."
            ) from exc
    for warning in caught:
        message = str(warning.message)
        if "missing adapter keys" in message:
            raise RuleboundError(
                f"The adapter at {adapter_dir} does not match the base model at {base_dir} "
                f"({message[:300]}). Merge it into the base it was trained on."
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if "size mismatch" in line] or text.splitlines() or [""]
    return lines[0][:400]
