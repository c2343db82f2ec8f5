"""Model cards for adapters: a YAML header PEFT and the hub understand, and what was trained how."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rulebound.models import EMBEDDED_ORIGIN, parse_source

TAGS = ["rulebound", "lora", "peft", "trl"]


def hub_base_model(source: str) -> str:
    """The hub id a card should name for a model source (embedded models name their origin)."""
    kind, value = parse_source(source)
    if kind == "embedded":
        return EMBEDDED_ORIGIN[value]
    if kind == "hf":
        return value
    return Path(value).name


def method_settings(method: str, cfg: dict) -> str:
    """The settings only this training method has, for the card's settings list."""
    if method == "sft":
        return f"max length {cfg.get('max_length')}, loss on the assistant's answer only"
    if method == "grpo":
        rewards = ", ".join(r if isinstance(r, str) else str(r.get("name")) for r in cfg.get("rewards", []))
        kl = cfg.get("kl_beta", cfg.get("beta", 0.0))
        return (f"{cfg.get('num_generations')} generations per prompt of at most {cfg.get('max_completion_length')} "
                f"tokens, temperature {cfg.get('temperature', 1.0)}, KL beta {kl}, rewards: {rewards}, "
                f"started from: {cfg.get('init') or 'the base model'}")
    return f"beta {cfg.get('beta', 0.1)}, max length {cfg.get('max_length')}"


def card_text(*, base_model: str, experiment: str, cfg: dict, backend: str, trainer: str,
              metrics: pd.DataFrame, summary: dict | None = None, method: str = "orpo") -> str:
    tags = TAGS + [method, experiment.replace("/", "-")]  # lipogram runs are named lipogram/<method>
    lora = cfg.get("lora", {})
    last = metrics.iloc[-1].to_dict() if len(metrics) else {}
    final = "\n".join(f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float) and k != "epoch")
    summary_lines = "\n".join(f"- {k}: {v}" for k, v in (summary or {}).items())
    header = "\n".join(
        ["---", f"base_model: {hub_base_model(base_model)}", "library_name: peft", "pipeline_tag: text-generation",
         "tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    )
    return f"""{header}
# {experiment} LoRA adapter ({method.upper()})

Trained by the rulebound pipeline, experiment `{experiment}`.
Base model source: `{base_model}`. Backend: `{backend}`, trainer: `{trainer}`.

Load it with PEFT:

```python
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained("<this folder>")
```

## Training settings

- LoRA: r={lora.get('r', 16)}, alpha={lora.get('alpha', 16)}, dropout={lora.get('dropout', 0.0)}, \
targets={', '.join(lora.get('target_modules', []))}
- learning rate {cfg.get('learning_rate')}, schedule {cfg.get('lr_scheduler_type', 'linear')}, \
batch {cfg.get('batch_size')} x accumulation {cfg.get('gradient_accumulation_steps', 1)}, \
steps {cfg.get('max_steps', -1)}, {method_settings(method, cfg)}

## Last logged step

| metric | value |
| --- | --- |
{final}

## Run summary

{summary_lines}
"""


def write_model_card(folder: Path, **kwargs) -> None:
    (Path(folder) / "README.md").write_text(card_text(**kwargs), encoding="utf-8")
