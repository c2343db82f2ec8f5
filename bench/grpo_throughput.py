"""GRPO throughput: stock TRL GRPOTrainer vs Unsloth's GRPO path vs rulebound's FastGRPOTrainer, one table.

Workload (the lipogram preset's GRPO shape, presets/lipogram-qwen2.5-0.5b.yaml): 8 prompts a step x 8
generations, 96 new tokens per completion (end-of-sequence suppressed, so every completion has the same
length and every contender does the same work), temperature 1, beta 0, LoRA r=16 alpha=16 on all linear
layers, bf16, fused AdamW at lr 5e-6, no gradient checkpointing. The model is a random-init Qwen2.5-0.5B shape
(--shape qwen2.5-0.5b, word-level prompts of 20-40 tokens) or a real model folder (--model-dir, e.g. the
embedded SmolLM2-135M-Instruct prepared by the pipeline; its prompts are the shipped lipogram questions in
its chat template). The reward counts a letter (e, or a digit on the word-level models). Each contender
runs in its own process (Unsloth patches transformers and TRL on import), on the same prompts in the same
order; median of the timed steps after the warm-up steps.

    python bench/grpo_throughput.py                               # on a CUDA GPU
    python bench/grpo_throughput.py --tiny                        # a CPU smoke check
    python bench/grpo_throughput.py --model-dir resources/models/smollm2-135m-instruct --letter e

Columns: generation and training (everything else in the step: rewards, log-probs, loss, backward,
optimizer) seconds per step; samples/s counts completions; tokens/s counts completion tokens over the
whole step, generated tokens/s over generation time alone; peak GiB is torch.cuda.max_memory_allocated().
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
from bench_models import is_word_model, model_dir_for, versions, word_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CONTENDERS = {
    "trl": {"backend": "transformers", "trainer": "trl"},
    "unsloth": {"backend": "unsloth", "trainer": "trl"},
    "rulebound": {"backend": "transformers", "trainer": "fast"},
    # TRL's in-process continuous batching (transformers' paged attention), a switch a TRL user has
    "trl-paged": {"backend": "transformers", "trainer": "trl", "paged": True},
    "rulebound-eager": {"backend": "transformers", "trainer": "fast", "graphs": False},  # no CUDA graphs
}


def prompts_for(model_dir: Path, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    if is_word_model(model_dir):
        from transformers import AutoConfig

        vocab = AutoConfig.from_pretrained(model_dir).vocab_size
        return [" ".join(f"t{rng.randrange(vocab - 4)}" for _ in range(rng.randint(20, 40))) for _ in range(n)]
    questions = [json.loads(line)["prompt"] for line in
                 (REPO / "rulebound" / "data" / "lipogram_qa.jsonl").read_text().splitlines() if line.strip()]
    rng.shuffle(questions)
    return [[{"role": "user", "content": questions[i % len(questions)]}] for i in range(n)]


def letter_reward(letter: str):
    def count_letter(completions, **kwargs):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [-100.0 * t.lower().count(letter) / max(1, len(t)) for t in texts]

    return count_letter


def worker(opts) -> dict:
    spec = CONTENDERS[opts.worker]
    if spec["backend"] == "unsloth":
        import unsloth  # noqa: F401  (first: it patches transformers and TRL on import)
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed

    from rulebound.train.backend import LoraSettings, load_for_training

    cuda = torch.cuda.is_available()
    set_seed(0)
    model, tokenizer, backend = load_for_training(
        opts.model_dir, LoraSettings(r=16, alpha=16), spec["backend"], max_seq_length=1024,
        precision="bf16" if cuda else "fp32", gradient_checkpointing=False)
    from trl import GRPOConfig, GRPOTrainer

    if is_word_model(Path(opts.model_dir)):
        tokenizer = word_tokenizer(model.config.vocab_size)  # bench_models.word_tokenizer says why

    if spec["trainer"] == "fast":
        from rulebound.train.grpo_fast import FastGRPOTrainer as GRPOTrainer  # noqa: F811
    steps = opts.steps + opts.warmup
    data = Dataset.from_list([{"prompt": p} for p in prompts_for(Path(opts.model_dir), steps * opts.prompts)])
    eos = [tokenizer.eos_token_id] + ([tokenizer.pad_token_id] if tokenizer.pad_token_id is not None else [])
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="grpo-bench-"), max_steps=steps,
        per_device_train_batch_size=opts.prompts * opts.generations, num_generations=opts.generations,
        # explicit: Unsloth's GRPOConfig defaults it to 2 (two batches a step), which doubles its work per step
        gradient_accumulation_steps=1,
        max_completion_length=opts.completion, temperature=1.0, beta=0.0, learning_rate=5e-6,
        lr_scheduler_type="constant", bf16=cuda, use_cpu=not cuda, optim="adamw_torch_fused" if cuda else "adamw_torch",
        logging_steps=1, save_strategy="no", report_to="none", seed=0, data_seed=0, disable_tqdm=True,
        dataloader_num_workers=0, log_completions=False, generation_kwargs={"suppress_tokens": sorted(set(eos))},
        use_transformers_continuous_batching=bool(spec.get("paged")),
    )
    extra = {"cuda_graphs": spec.get("graphs", True)} if spec["trainer"] == "fast" else {}
    trainer = GRPOTrainer(model=model, reward_funcs=letter_reward(opts.letter), args=args, train_dataset=data,
                          processing_class=tokenizer, **extra)
    gen_times, step_times, completion_tokens = [], [], []

    def sync():
        if cuda:
            torch.cuda.synchronize()

    name = "_generate_single_turn" if hasattr(trainer, "_generate_single_turn") else "_generate"
    original = getattr(trainer, name)

    def timed(*a, **k):
        sync()
        t0 = time.perf_counter()
        out = original(*a, **k)
        sync()
        gen_times.append(time.perf_counter() - t0)
        ids = out[0] if name == "_generate_single_turn" else out[1]
        completion_tokens.append(sum(len(c) for c in ids))
        return out

    setattr(trainer, name, timed)

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            sync()
            step_times.append(time.perf_counter() - self.t0)

    trainer.add_callback(Clock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    w = opts.warmup
    step_s, gen_s = statistics.median(step_times[w:]), statistics.median(gen_times[w:]) if gen_times else float("nan")
    tokens = statistics.mean(completion_tokens[w:]) if completion_tokens else float("nan")
    samples = opts.prompts * opts.generations
    logs = [e for e in trainer.state.log_history if "loss" in e]
    return {
        "contender": opts.worker, "backend": backend, "trainer": type(trainer).__name__, "samples": samples,
        "s_per_step": step_s, "gen_s": gen_s, "train_s": step_s - gen_s, "samples_per_s": samples / step_s,
        "tokens_per_s": tokens / step_s, "gen_tokens_per_s": tokens / gen_s, "completion_tokens": tokens,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "losses": [e["loss"] for e in logs], "rewards": [e.get("reward") for e in logs],
        "mean_length": [e.get("completions/mean_length") for e in logs], "versions": versions(),
    }


def table(results: list[dict]) -> str:
    base = next((r for r in results if r["contender"] == "trl" and "error" not in r), None)
    lines = ["| contender | trainer | backend | completions/step | generation s/step | training s/step | s/step "
             "| samples/s | tokens/s | generated tokens/s | peak GiB | vs TRL samples/s |", "|" + "---|" * 12]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['contender']} | failed: {r['error']} |" + " |" * 10)
            continue
        ratio = f"{r['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        lines.append(f"| {r['contender']} | {r['trainer']} | {r['backend']} | {r['samples']} | {r['gen_s']:.3f} | "
                     f"{r['train_s']:.3f} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['gen_tokens_per_s']:,.0f} | {r['peak_gb']:.2f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--contenders", default="trl,unsloth,rulebound", help=f"comma list of {', '.join(CONTENDERS)}")
    p.add_argument("--shape", default="qwen2.5-0.5b", help="random-init shape (bench/bench_models.py SHAPES)")
    p.add_argument("--model-dir", help="a real HF model folder instead of a random-init shape")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--completion", type=int, default=96)
    p.add_argument("--letter", default=None, help="the counted letter (default: e, or 7 on word-level models)")
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: a smoke check")
    p.add_argument("--json", help="write all measurements here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.worker:
        print("RESULT " + json.dumps(worker(opts)), flush=True)
        return 0

    import torch

    if opts.tiny:
        opts.shape, opts.steps, opts.warmup, opts.prompts, opts.generations, opts.completion = "tiny", 2, 1, 2, 2, 8
    root = Path(os.environ.get("RULEBOUND_BENCH_DIR", tempfile.gettempdir()))
    model_dir = model_dir_for(opts.shape, root, None if opts.tiny else opts.model_dir)
    letter = opts.letter or ("7" if is_word_model(model_dir) else "e")
    results = []
    for name in opts.contenders.split(","):
        if CONTENDERS[name]["backend"] == "unsloth" and not torch.cuda.is_available():
            print(f"skip {name}: Unsloth needs a CUDA GPU", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--worker", name, "--model-dir", str(model_dir), "--letter", letter]
        cmd += [f"--{k}={getattr(opts, k)}" for k in ("steps", "warmup", "prompts", "generations", "completion")]
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
    print(f"model: {model_dir.name}; {opts.prompts} prompts x {opts.generations} generations x "
          f"{opts.completion} tokens; median of {opts.steps} steps after {opts.warmup}")
    print(table(results))
    ok = [r for r in results if "error" not in r]
    if ok:
        print("\n| step | " + " | ".join(f"{r['contender']} loss / reward" for r in ok) + " |")
        print("|---|" + "---|" * len(ok))
        for i in range(max(len(r["losses"]) for r in ok)):
            cells = [f"{r['losses'][i]:.4f} / {r['rewards'][i]:.3f}" if i < len(r["losses"]) else "" for r in ok]
            print(f"| {i + 1} | " + " | ".join(cells) + " |")
    if opts.json:
        Path(opts.json).write_text(json.dumps(results, indent=1))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
