"""Write a tiny random-init model with the embedded SmolLM2's tokenizer and chat template, and a config overlay.

The GPU machine has no network and takes at most 64 MiB of files, so the embedded 98 MB model cannot travel
there. This model (hidden 64, 2 layers, untied, SmolLM2's 49,152-token vocabulary, ~6.4M parameters) lets the
real pipeline's GPU rules run there on the smoke config; its outputs are meaningless, its code paths are not.

    python bench/gpu_smoke_model.py resources/models/smollm2-135m-instruct .gpu-smoke
    snakemake --profile profiles/local-gpu --configfile tests/smoke/config.yaml .gpu-smoke/config.yaml ...
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def main(source: str, out: str) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    src, out_dir = Path(source), Path(out)
    model_dir = out_dir / "tiny-smollm2"
    model_dir.mkdir(parents=True, exist_ok=True)
    dims = json.loads((src / "config.json").read_text())
    dims.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32, tie_word_embeddings=False)
    dims.pop("architectures", None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**dims)).to(torch.bfloat16)
    # Random tied weights repeat the prompt's last token (a newline) or pick an end-of-turn token and write
    # nothing, which the data step rightly refuses: an untied, larger-scale random head that never picks a
    # special token makes greedy decoding write (meaningless) words.
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.normal_(0, 0.5)
        head[:17] = 0
    model.save_pretrained(model_dir)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, model_dir / name)
    overlay = {"models": {"tiny-smollm2": {"source": str(model_dir)}},
               "experiments": {name: {"model": "tiny-smollm2"} for name in ("politeness", "truthy", "lipogram")}}
    (out_dir / "config.yaml").write_text(json.dumps(overlay, indent=1) + "\n")  # JSON is YAML
    print(f"wrote {model_dir} ({sum(p.numel() for p in model.parameters()):,} parameters) and {out_dir}/config.yaml")


if __name__ == "__main__":
    main(*sys.argv[1:3])
