"""SFT throughput: stock TRL SFTTrainer vs Unsloth vs rulebound's FastSFTTrainer, one table.

Workload (the lipogram preset's SFT shape, presets/lipogram-qwen2.5-0.5b.yaml): a random-init Qwen2.5-0.5B
shape, 16 prompt-completion rows a step, prompts of 20-60 tokens and answers of 10-100 (uniform; the shipped
e-free answers and the distilled constrained answers are short), loss on the answer only (TRL's chunked NLL),
LoRA r=16 alpha=16 on all linear layers, bf16, fused AdamW at lr 2e-4, no gradient checkpointing. Each
contender runs in its own process on the same rows in the same order; median of the timed steps after the
warm-up steps (rulebound's compiled layers compile there).

    python bench/sft_throughput.py                 # on a CUDA GPU
    python bench/sft_throughput.py --tiny          # a CPU smoke check

tokens/s counts real (non-padding) tokens; MFU = 6 x matmul parameters x those tokens / step time /
790 TFLOP/s (H100/H200 dense bf16), attention left out, as docs/benchmarks.md counts ORPO's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import is_word_model, matmul_params, model_dir_for, versions, word_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PEAK_FLOPS = 790e12

CONTENDERS = {
    "trl": {"backend": "transformers", "fast": False},
    "unsloth": {"backend": "unsloth", "fast": False},
    # the training rule's GPU default (rulebound.train.sft_fast.uses_fast_sft)
    "rulebound": {"backend": "transformers", "fast": True, "attn": "flex_attention", "compiled": True},
    "rulebound-sdpa": {"backend": "transformers", "fast": True, "attn": "sdpa", "compiled": False},
}


def rows(n: int, vocab: int, prompt=(20, 60), answer=(10, 100), seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(f"t{rng.randrange(vocab - 4)}" for _ in range(rng.randint(lo, hi)))

    return Dataset.from_list([{"prompt": text(*prompt), "completion": " " + text(*answer)} for _ in range(n)])


def worker(opts) -> dict:
    spec = CONTENDERS[opts.worker]
    if spec["backend"] == "unsloth":
        import unsloth  # noqa: F401
    import torch
    from transformers import TrainerCallback, set_seed

    from rulebound.train.backend import LoraSettings, load_for_training

    cuda = torch.cuda.is_available()
    set_seed(0)
    model, tokenizer, backend = load_for_training(
        opts.model_dir, LoraSettings(r=16, alpha=16), spec["backend"], max_seq_length=opts.max_length,
        precision="bf16" if cuda else "fp32", gradient_checkpointing=False,
        attn_implementation=(spec.get("attn") if cuda else "sdpa") if spec["backend"] == "transformers" else None,
        compile_layers=spec.get("compiled", False) and cuda)
    from trl import SFTConfig, SFTTrainer

    if is_word_model(Path(opts.model_dir)):
        tokenizer = word_tokenizer(model.config.vocab_size)  # bench_models.word_tokenizer says why

    steps = opts.steps + opts.warmup
    data = rows(steps * opts.batch, model.config.vocab_size, answer=(opts.answer_min, opts.answer_max))
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="sft-bench-"), max_steps=steps, per_device_train_batch_size=opts.batch,
        max_length=opts.max_length, learning_rate=2e-4, lr_scheduler_type="constant", bf16=cuda, use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch", logging_steps=1, save_strategy="no", report_to="none",
        seed=0, data_seed=0, disable_tqdm=True, dataloader_num_workers=0, completion_only_loss=True, packing=False,
    )
    if spec["fast"]:
        from rulebound.train.sft_fast import FastSFTTrainer

        trainer = FastSFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                 pack_multiple=256 if cuda else 8)
    else:
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    times, tokens, padded = [], [], []

    def sync():
        if cuda:
            torch.cuda.synchronize()

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            times.append(time.perf_counter() - self.t0)

    original = trainer.compute_loss

    def counting(model_, inputs, *a, **k):
        if "attention_mask" in inputs:
            tokens.append(int(inputs["attention_mask"].sum()))
            padded.append(inputs["attention_mask"].numel())
        return original(model_, inputs, *a, **k)

    trainer.compute_loss = counting
    trainer.add_callback(Clock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    w = opts.warmup
    step_s = statistics.median(times[w:])
    step_tokens = statistics.mean(tokens[w:]) if tokens else float("nan")
    logs = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "contender": opts.worker, "backend": backend, "trainer": type(trainer).__name__, "batch": opts.batch,
        "s_per_step": step_s, "samples_per_s": opts.batch / step_s, "tokens_per_s": step_tokens / step_s,
        "padding": 1 - sum(tokens[w:]) / max(1, sum(padded[w:])) if tokens else float("nan"),
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "mfu": 6 * matmul_params(model) * step_tokens / step_s / PEAK_FLOPS,
        "losses": [e["loss"] for e in logs], "versions": versions(),
    }


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["contender"] == "trl" and "error" not in r), None)
    lines = ["| contender | trainer | backend | batch | s/step (median) | samples/s | tokens/s | padding | peak GiB "
             "| MFU | vs TRL samples/s |", "|" + "---|" * 11]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['contender']} | failed: {r['error']} |" + " |" * 9)
            continue
        ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        lines.append(f"| {r['contender']} | {r['trainer']} | {r['backend']} | {r['batch']} | {r['s_per_step']:.3f} | "
                     f"{r['samples_per_s']:.1f} | {r['tokens_per_s']:,.0f} | {r['padding']:.0%} | "
                     f"{r['peak_gb']:.2f} | {r['mfu']:.1%} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contenders", default="trl,unsloth,rulebound", help=f"comma list of {', '.join(CONTENDERS)}")
    p.add_argument("--shape", default="qwen2.5-0.5b")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--answer-min", type=int, default=10)
    p.add_argument("--answer-max", type=int, default=100)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--json")
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print("RESULT " + json.dumps(worker(opts)), flush=True)
        return 0

    import torch

    if opts.tiny:
        opts.shape, opts.steps, opts.warmup, opts.batch, opts.max_length = "tiny", 3, 1, 4, 192
    model_dir = model_dir_for(opts.shape, Path(os.environ.get("RULEBOUND_BENCH_DIR", tempfile.gettempdir())))
    results = []
    for name in opts.contenders.split(","):
        if CONTENDERS[name]["backend"] == "unsloth" and not torch.cuda.is_available():
            print(f"skip {name}: Unsloth needs a CUDA GPU", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--worker", name, "--model-dir", str(model_dir)]
        cmd += [f"--{k.replace('_', '-')}={getattr(opts, k)}" for k in
                ("steps", "warmup", "batch", "max_length", "answer_min", "answer_max")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [line[7:] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            print(f"--- {name} failed (rc {proc.returncode}):\n" + "\n".join(tail), file=sys.stderr)
            results.append({"contender": name, "error": (tail or ["?"])[-1][:120].replace("|", "/")})
            continue
        results.append(json.loads(found[-1]))
        print(f"{name}: {results[-1]['s_per_step']:.3f} s/step", file=sys.stderr, flush=True)
    print(f"model: {model_dir.name}; batch {opts.batch}; median of {opts.steps} steps after {opts.warmup}")
    print(table(results))
    ok = [r for r in results if "error" not in r]
    if ok:
        print("\n| step | " + " | ".join(r["contender"] for r in ok) + " |\n|---|" + "---|" * len(ok))
        for i in range(max(len(r["losses"]) for r in ok)):
            print(f"| {i + 1} | " + " | ".join(f"{r['losses'][i]:.4f}" if i < len(r["losses"]) else "" for r in ok)
                  + " |")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
