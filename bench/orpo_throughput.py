"""ORPO training throughput: HF+PEFT+TRL vs stock Unsloth vs rulebound's FusedORPOTrainer, one table.

Workload (the anchor): a random-init Llama-3.2-3B-shaped model (hidden 3072, 28 layers, 24 heads, 8 KV
heads, intermediate 8192, vocab 128256, tied embeddings), LoRA r=16 alpha=16 on q,k,v,o,gate,up,down,
ORPO beta 0.1, 8 pairs a step, <= 512 tokens a sequence (prompt 32-256 tokens, each answer 32-256,
uniform), bf16, gradient checkpointing, AdamW, median of 30 timed steps after 5 warm-up steps.
``--shape short-prompt`` is the short-prompt, long-answer workload (prompts of 20-60 tokens, each answer
80-200), everything else the same.

Each contender runs in its own subprocess (Unsloth patches transformers globally on import):

    python bench/orpo_throughput.py                       # the anchor on a CUDA GPU (about 6 minutes)
    python bench/orpo_throughput.py --tiny                # a CPU smoke check in seconds
    python bench/orpo_throughput.py --contenders hf,rulebound-hf --steps 20 --warmup 0 --losses
    python bench/orpo_throughput.py --shape short-prompt --contenders unsloth,rulebound,rulebound-offload

MFU counts 6 x (matmul parameters, lm_head included) x real (non-padding) tokens per step against
790 TFLOP/s bf16 (H100/H200 dense), attention score FLOPs left out.
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

REPO = Path(__file__).resolve().parents[1]
PEAK_FLOPS = 790e12

def _c(backend, trainer, padding_free=False, batch_mult=1, prefix=False, attn=None, liger=False, chunk=2**26,
       multiple=None, compiled=False, offload=False):
    return {"backend": backend, "trainer": trainer, "padding_free": padding_free, "batch_mult": batch_mult,
            "prefix_sharing": prefix, "attn": attn, "liger": liger, "chunk": chunk, "multiple": multiple,
            "compiled": compiled, "offload": offload}


CONTENDERS = {
    "hf": _c("transformers", "trl"),
    "unsloth": _c("unsloth", "trl"),
    # the training rule's GPU default (rulebound.train.backend.uses_fast_path): shared-prefix packing,
    # block-sparse flex attention, torch.compile'd decoder layers, chunked ORPO head (2^25 logits a chunk)
    "rulebound": _c("transformers", "fused", prefix=True, attn="flex_attention", compiled=True, chunk=2**25),
    # the same with each checkpointed layer input parked in pinned host memory (rulebound.train.offload_checkpoint)
    # and 2^24 logits a chunk: the memory levers
    "rulebound-offload": _c("transformers", "fused", prefix=True, attn="flex_attention", compiled=True, chunk=2**24,
                            offload=True),
    "rulebound-offload-m128": _c("transformers", "fused", prefix=True, attn="flex_attention", compiled=True,
                                 chunk=2**24, offload=True, multiple=128),
    # the same without compiling, with liger-kernel's RMSNorm/RoPE/SwiGLU (liger's autograd breaks compile)
    "rulebound-liger": _c("transformers", "fused", prefix=True, attn="flex_attention", liger=True),
    "rulebound-liger-c25": _c("transformers", "fused", prefix=True, attn="flex_attention", liger=True, chunk=2**25),
    "rulebound-liger-m128": _c("transformers", "fused", prefix=True, attn="flex_attention", liger=True, multiple=128),
    "rulebound-prefix-noliger": _c("transformers", "fused", prefix=True, attn="flex_attention"),
    "rulebound-prefix-sdpa": _c("transformers", "fused", prefix=True, attn="sdpa", liger=True),
    "rulebound-packed-flex": _c("transformers", "fused", padding_free=True, attn="flex_attention", liger=True),
    "rulebound-unsloth": _c("unsloth", "fused"),  # the previous best: Unsloth's model patches + chunked head
    "rulebound-packed": _c("unsloth", "fused", padding_free=True),
    "rulebound-b16": _c("unsloth", "fused", batch_mult=2),
    "rulebound-hf": _c("transformers", "fused", padding_free=True),
    "rulebound-hf-padded": _c("transformers", "fused"),
}
# the workloads: (prompt tokens, answer tokens) ranges, uniform; "anchor" is the original one
WORKLOADS = {"anchor": ((32, 256), (32, 256)), "short-prompt": ((20, 60), (80, 200))}
SHAPES = {
    "llama-3.2-3b": dict(hidden_size=3072, num_hidden_layers=28, num_attention_heads=24, num_key_value_heads=8,
                         intermediate_size=8192, vocab_size=128256, head_dim=128, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=512, head_dim=16),
}


def build_model_dir(path: Path, shape: str) -> None:
    """Save a random-init Llama of the given shape with a word-level tokenizer ("t0".."tN") beside it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dims = SHAPES[shape]
    special = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(special + [f"t{i}" for i in range(dims["vocab_size"] - len(special))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    config = LlamaConfig(**dims, max_position_embeddings=2048, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, dtype="bfloat16")
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    tmp = path.with_name(path.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(path)


def preference_rows(n: int, vocab: int, prompt: tuple[int, int], answer: tuple[int, int], seed: int = 0):
    from datasets import Dataset

    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(f"t{rng.randrange(vocab - 4)}" for _ in range(rng.randint(lo, hi)))

    return Dataset.from_list([
        {"prompt": text(*prompt), "chosen": " " + text(*answer), "rejected": " " + text(*answer)} for _ in range(n)
    ])


def workload(name: str, max_length: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Prompt and answer length ranges; the anchor's scale with --max-length (32-256 at 512), as before."""
    if name == "anchor":
        half = max_length // 2
        return (max(1, half // 8), half), (max(1, half // 8), half)
    return WORKLOADS[name]


def worker(opts) -> dict:
    """Train one contender in this process and return its measurements."""
    spec = CONTENDERS[opts.worker]
    backend, trainer_name, padding_free, batch_mult = spec["backend"], spec["trainer"], spec["padding_free"], \
        spec["batch_mult"]
    if backend == "unsloth":
        import unsloth  # noqa: F401  (first: it patches transformers and TRL on import)
    import torch
    from transformers import TrainerCallback, set_seed
    from trl.experimental.orpo import ORPOConfig

    from rulebound.train.backend import LoraSettings, load_for_training
    from rulebound.train.orpo import trainer_class

    cuda = torch.cuda.is_available()
    set_seed(0)
    model, tokenizer, backend = load_for_training(
        opts.model_dir, LoraSettings(r=16, alpha=16), backend, max_seq_length=opts.max_length,
        precision="bf16" if cuda else "fp32", gradient_checkpointing=True,
        attn_implementation=spec["attn"] if cuda or spec["attn"] != "flex_attention" else "sdpa",
        liger_kernels=spec["liger"] and cuda, compile_layers=spec["compiled"],
    )
    batch = opts.batch * batch_mult
    steps, warmup = opts.steps // batch_mult or 1, opts.warmup // batch_mult
    vocab = model.config.vocab_size
    prompt_range, answer_range = workload(opts.shape, opts.max_length)
    data = preference_rows((steps + warmup) * batch, vocab, prompt_range, answer_range)
    if spec.get("offload"):
        from rulebound.train.offload_checkpoint import enable_offloaded_checkpointing

        enable_offloaded_checkpointing(model)
    args = ORPOConfig(
        output_dir=tempfile.mkdtemp(prefix="orpo-bench-"), max_steps=steps + warmup, per_device_train_batch_size=batch,
        learning_rate=2e-4, lr_scheduler_type="constant", beta=0.1, max_length=opts.max_length,
        bf16=cuda, use_cpu=not cuda, optim="adamw_torch_fused" if cuda else
        "adamw_torch", logging_steps=1, save_strategy="no", report_to="none", seed=0, data_seed=0, disable_tqdm=True,
        dataloader_num_workers=0, gradient_checkpointing=False,  # the backend enabled it on the model
    )
    cls = trainer_class(trainer_name)
    extra = {"padding_free": padding_free, "prefix_sharing": spec["prefix_sharing"], "chunk_elements": spec["chunk"],
             "pack_multiple": spec["multiple"]} if trainer_name == "fused" else {}
    trainer = cls(model=model, args=args, train_dataset=data, processing_class=tokenizer, **extra)

    times, tokens, padded = [], [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t0)

    original = trainer.concatenated_inputs

    def counting(batch_, **kw):  # real vs padded tokens of each step's 2B sequences (before prefix sharing)
        out = original(batch_, **kw)
        tokens.append(int(out["concatenated_attention_mask"].sum()))
        padded.append(out["concatenated_attention_mask"].numel())
        return out

    trainer.concatenated_inputs = counting
    trainer.add_callback(Clock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if opts.profile:
        trainer.add_callback(Profile(warmup + steps - opts.profile, opts.profile))
    trainer.train()
    timed = times[warmup:]
    logs = [e for e in trainer.state.log_history if "loss" in e]
    matmul_params = sum(p.numel() for n, p in model.named_parameters()
                        if p.dim() == 2 and "embed_tokens" not in n and "lora_" not in n)
    if model.config.tie_word_embeddings or not any("lm_head" in n for n, _ in model.named_parameters()):
        matmul_params += vocab * model.config.hidden_size
    step_s = statistics.median(timed)
    step_tokens = statistics.mean(tokens[warmup:])
    return {
        "contender": opts.worker, "shape": opts.shape, "backend": backend, "trainer": cls.__name__,
        "padding_free": padding_free,
        "batch": batch, "s_per_step": step_s, "samples_per_s": batch / step_s, "tokens_per_s": step_tokens / step_s,
        "padding": 1 - sum(tokens[warmup:]) / max(1, sum(padded[warmup:])),
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "reserved_gb": torch.cuda.max_memory_reserved() / 2**30 if cuda else float("nan"),
        "mfu": 6 * matmul_params * step_tokens / step_s / PEAK_FLOPS,
        "losses": [e["loss"] for e in logs], "nll": [e["nll_loss"] for e in logs],
        "log_odds_ratio": [e["log_odds_ratio"] for e in logs],
        "versions": versions(),
    }


def Profile(start: int, n: int):  # noqa: N802 (a callback factory)
    """A callback that records steps start..start+n with torch.profiler and prints the top CUDA kernels."""
    from transformers import TrainerCallback

    class ProfileSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == start:
                import torch

                self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                               torch.profiler.ProfilerActivity.CUDA])
                self.prof.__enter__()

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == start + n and hasattr(self, "prof"):
                import torch

                torch.cuda.synchronize()
                self.prof.__exit__(None, None, None)
                table = self.prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70)
                out = os.environ.get("RULEBOUND_PROFILE_OUT")
                if out:
                    Path(out).write_text(f"{n} steps\n{table}")
                print(table, file=sys.stderr)

    return ProfileSteps()


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "unsloth", "unsloth_zoo", "bitsandbytes"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    import torch

    out["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return out


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["contender"] == "unsloth" and "error" not in r), None)
    lines = ["| contender | trainer | backend | batch | s/step (median) | samples/s | tokens/s | padding | peak GiB "
             "| reserved GiB | MFU | vs Unsloth samples/s |", "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['contender']} | failed: {r['error']} |" + " |" * 10)
            continue
        ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        lines.append(
            f"| {r['contender']} | {r['trainer']}{setup(r)} | {r['backend']} | "
            f"{r['batch']} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:,.0f} | "
            f"{r['padding']:.0%} | {r['peak_gb']:.1f} | {r['reserved_gb']:.1f} | {r['mfu']:.1%} | {ratio} |"
        )
    return "\n".join(lines)


def setup(r: dict) -> str:
    spec = CONTENDERS.get(r["contender"], {})
    bits = [b for b, on in (("shared-prefix", spec.get("prefix_sharing")), ("packed", r.get("padding_free")),
                            (spec.get("attn") or "", spec.get("attn")), ("liger", spec.get("liger")),
                            ("compiled layers", spec.get("compiled")),
                            (f"chunk 2^{(spec.get('chunk') or 1).bit_length() - 1}", spec.get("chunk", 2**26) != 2**26),
                            (f"pad to {spec.get('multiple')}", spec.get("multiple")),
                            ("offloaded checkpoints", spec.get("offload"))) if on]
    return f" ({', '.join(bits)})" if bits else ""


def loss_table(results: list[dict]) -> str:
    ok = [r for r in results if "error" not in r]
    if not ok:
        return "(no losses: every contender failed)"
    lines = ["| step | " + " | ".join(r["contender"] for r in ok) + " |", "|---|" + "---|" * len(ok)]
    for i in range(max(len(r["losses"]) for r in ok)):
        cells = [f"{r['losses'][i]:.4f}" if i < len(r["losses"]) else "" for r in ok]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contenders", default="hf,unsloth,rulebound",
                   help=f"comma list of {', '.join(CONTENDERS)}")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--shape", default="anchor", choices=sorted(WORKLOADS),
                   help="anchor: prompts and answers 32-256 tokens; short-prompt: prompts 20-60, answers 80-200")
    p.add_argument("--profile", type=int, default=0, help="profile this many final steps (torch.profiler)")
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: a smoke check in seconds")
    p.add_argument("--losses", action="store_true", help="also print each step's loss per contender")
    p.add_argument("--json", help="write all measurements here")
    p.add_argument("--model-dir", help=argparse.SUPPRESS)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print("RESULT " + json.dumps(worker(opts)), flush=True)
        return 0

    import torch

    if opts.tiny:
        opts.steps, opts.warmup, opts.batch = min(opts.steps, 3), min(opts.warmup, 1), 2
        opts.max_length = 64 if opts.shape == "anchor" else 512
    shape = "tiny" if opts.tiny else "llama-3.2-3b"
    model_dir = Path(os.environ.get("RULEBOUND_BENCH_DIR", tempfile.gettempdir())) / f"rulebound-bench-{shape}"
    if not model_dir.exists():
        build_model_dir(model_dir, shape)
    results = []
    for name in opts.contenders.split(","):
        if CONTENDERS[name]["backend"] == "unsloth" and not torch.cuda.is_available():
            print(f"skip {name}: Unsloth needs a CUDA GPU", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--worker", name, "--model-dir", str(model_dir), "--steps", str(opts.steps),
               "--warmup", str(opts.warmup), "--batch", str(opts.batch), "--max-length", str(opts.max_length),
               "--shape", opts.shape, "--profile", str(opts.profile if name.startswith("rulebound") else 0)]
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
    print(f"workload: {opts.shape} (prompt, answer tokens: {workload(opts.shape, opts.max_length)}), batch {opts.batch}, "
          f"median of {opts.steps} steps after {opts.warmup}")
    print(table(results))
    if opts.losses:
        print()
        print(loss_table(results))
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
