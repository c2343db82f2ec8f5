"""One training rule on N processes: data-parallel ORPO, SFT and GRPO through ``accelerate launch``.

A training rule's ``gpu`` resource (set per rule in a profile's ``set-resources``) is the number of processes.
With 1 the trainer runs in the Snakemake job's own process, as it always did. With N > 1 the job starts
``accelerate launch --num_processes N -m rulebound.train.distributed <spec.json>``: N copies of the same
trainer function, one per GPU (or, without CUDA, N CPU processes on the gloo backend: what the tests run).
The Trainer inside each process finds the process group accelerate set up and wraps the model in DDP
(default) or FSDP (the rule's ``parallel: fsdp`` resource, for a model that does not fit one GPU).

What stays the same on 1 or N processes:

* **The global batch.** The config's ``batch_size`` (pairs, rows, or GRPO prompts per optimizer step) is
  split over the processes: ``per_device_batch`` is ``batch_size / N`` and ``gradient_accumulation_steps``
  stays as configured, so global = per-device x accumulation x N = batch_size x accumulation. A batch size
  that N does not divide is refused. accelerate hands the k-th per-device batch of the (seeded) sampler to
  rank k mod N, so one step sees the same rows as the one-process step, and DDP averages the ranks'
  gradients, as one process averages over its batch.
* **Outputs.** Every rank records the same (gathered) metrics; only rank 0 writes ``metrics.csv``, the
  adapter and its model card (``save_on_main``), so the files are those of a one-process run.
* **Logs.** Rank 0 logs at INFO, the other ranks only warnings and errors, each line tagged with its rank;
  the launching job copies all of it into the rule's log.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from rulebound.errors import ConfigError

log = logging.getLogger(__name__)

# method -> "module:function"; every function takes the same keyword arguments as the rule's script passes.
TRAINERS = {
    "orpo": "rulebound.train.orpo:train_orpo",
    "sft": "rulebound.train.sft:train_sft",
    "grpo": "rulebound.train.grpo:train_grpo",
}
PARALLEL = ("ddp", "fsdp")
# accelerate's FSDP settings for LoRA: each decoder layer one shard unit (the model's _no_split_modules),
# frozen and trained parameters side by side in a unit (use_orig_params), a full state dict on rank 0 to save.
FSDP_FLAGS = ("--use_fsdp", "--fsdp_version", "1", "--fsdp_sharding_strategy", "FULL_SHARD",
              "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_use_orig_params", "true",
              "--fsdp_state_dict_type", "FULL_STATE_DICT", "--fsdp_sync_module_states", "true")


def world_size() -> int:
    """Processes in this run (``WORLD_SIZE``, set by the launcher; 1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def fsdp_enabled() -> bool:
    """Whether the launcher turned FSDP on for this process (accelerate's environment variable)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")


def per_device_batch(cfg: dict, processes: int | None = None) -> int:
    """The config's ``batch_size`` split over the processes, so the global batch stays the config's."""
    processes = world_size() if processes is None else processes
    batch = int(cfg["batch_size"])
    if batch < 1:
        raise ConfigError(f"train.batch_size must be at least 1; got {batch}.")
    if batch % processes:
        raise ConfigError(
            f"train.batch_size is {batch}, which does not split over {processes} processes (the rule's gpu "
            f"resource): the global batch (batch_size x gradient_accumulation_steps) must stay the config's. Set "
            f"batch_size to a multiple of {processes} (e.g. {processes * max(1, batch // processes)}, raising "
            f"gradient_accumulation_steps to keep the global batch), or set the rule's gpu resource to a "
            f"divisor of {batch}.")
    return batch // processes


def check_processes(processes, parallel: str = "ddp") -> int:
    """A rule's gpu resource as a process count, checked."""
    try:
        n = int(processes)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(f"A training rule's gpu resource must be a whole number >= 1 (processes to train on); "
                          f"got {processes!r}. Fix set-resources in the profile.")
    if parallel not in PARALLEL:
        raise ConfigError(f"A training rule's parallel resource must be one of {', '.join(PARALLEL)}; "
                          f"got {parallel!r}. Fix set-resources in the profile.")
    return n


def free_port() -> int:
    """A TCP port free now on this host, for the rendezvous (two N-process jobs on one node must not share)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(spec_path: str, processes: int, *, cpu: bool, parallel: str = "ddp",
                   port: int | None = None) -> list[str]:
    """The ``accelerate launch`` command line that runs ``spec_path``'s trainer on ``processes`` processes."""
    port = str(port or free_port())
    if cpu and processes > 1:
        # accelerate's multi-CPU launch needs MPI; torch's elastic launcher starts the same processes, and the
        # Trainer (use_cpu) then sets up gloo from the environment it leaves.
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", port, "-m", "rulebound.train.distributed", spec_path]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]
    if cpu:
        cmd.append("--cpu")
    elif processes > 1 and parallel == "ddp":
        cmd.append("--multi_gpu")
    if parallel == "fsdp":
        cmd += list(FSDP_FLAGS)
    return cmd + ["-m", "rulebound.train.distributed", spec_path]


def visible_gpus() -> int:
    from rulebound.train.backend import cuda_available

    if not cuda_available():
        return 0
    import torch

    return torch.cuda.device_count()


def train(method: str, processes=1, parallel: str = "ddp", *, launcher: bool = False, **kwargs):
    """Run a training rule's trainer on ``processes`` processes; the same outputs as one process.

    One process without ``launcher`` calls the trainer here (the rule as it always ran); otherwise the
    trainer runs under ``accelerate launch`` (``launcher=True`` with one process is the check that the
    launcher path changes nothing).
    """
    if method not in TRAINERS:
        raise ConfigError(f"Unknown training method {method!r}; expected one of {', '.join(TRAINERS)}.")
    n = check_processes(processes, parallel)
    if n == 1 and not launcher and parallel == "ddp":
        return trainer_function(method)(**kwargs)
    gpus = visible_gpus()
    if gpus and gpus < n:
        raise ConfigError(
            f"The rule asks for {n} GPUs (its gpu resource) but {gpus} are visible here "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}). Request {n} GPUs for the "
            "job (the Slurm profile does through the gpu resource) or lower gpu in the profile's set-resources.")
    if not gpus:
        if parallel == "fsdp":
            raise ConfigError("parallel: fsdp shards the model over CUDA GPUs and none is visible here; use ddp "
                              "(the default) on CPU, or run the rule on a GPU node.")
        log.warning("No CUDA GPU visible: training on %d CPU processes (gloo), which checks the data-parallel "
                    "path but is not faster than one process.", n)
    threads = max(1, int(kwargs.get("threads", 1)) // n)
    spec = {"method": method, "kwargs": {**kwargs, "threads": threads}}
    with tempfile.TemporaryDirectory(prefix="rulebound-launch-") as scratch:
        spec_path = Path(scratch) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        cmd = launch_command(str(spec_path), n, cpu=not gpus, parallel=parallel)
        log.info("%s on %d processes (%s): %s", method.upper(), n, parallel, " ".join(cmd))
        run_logged(cmd)
    return None


def run_logged(cmd: list[str]) -> None:
    """Run ``cmd``, copying its output line by line into this process's log; a failure names its exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            log.info("%s", line)
            tail = (tail + [line])[-20:]
        code = proc.wait()
    if code:
        raise RuntimeError(f"The training processes failed (exit code {code}); the rule's log has every rank's "
                           "output. Last lines:\n" + "\n".join(tail))


def trainer_function(method: str):
    module, name = TRAINERS[method].split(":")
    return getattr(importlib.import_module(module), name)


def setup_rank_logging() -> None:
    """Rank 0 logs INFO, the others warnings only; every line names its rank (the launcher copies them)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[rank {rank()}] %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if is_main_process() else logging.WARNING)
    logging.captureWarnings(True)


# ---- inside a trainer: the pieces DDP/FSDP need -------------------------------------------------------------


def is_ddp(model) -> bool:
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel)


def call_through(wrapper, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run as the forward of the module that DDP ``wrapper`` wraps.

    DDP only synchronises gradients for a backward whose forward went through ``DDP.forward`` (it arms the
    reducer there); a trainer that calls the decoder directly (the fused ORPO head) would otherwise train
    each rank on its own gradients, silently. The module's forward is swapped for ``fn`` for this one call
    (accelerate may have put its autocast wrapper there as an instance attribute: it is put back after).
    """
    module = wrapper.module
    saved = module.__dict__.get("forward")
    module.forward = lambda *a, **k: fn(*args, **kwargs)
    try:
        return wrapper()
    finally:
        if saved is None:
            del module.forward
        else:
            module.forward = saved


def global_count(count, accelerator):
    """A per-rank token count turned into the mean count per rank over all ranks (1 process: itself).

    A loss ``local_sum / global_count`` on every rank, averaged by DDP, is the sum over the global batch over
    its total count: the one-process mean over the same rows, not a mean of per-rank means.
    """
    if accelerator.num_processes == 1:
        return count
    import torch

    total = accelerator.reduce(count.detach().to(torch.float32).clone(), reduction="sum")
    return total / accelerator.num_processes


def gathered_state_dict(trainer):
    """Under FSDP the full (gathered) state dict, which every rank must call for; None otherwise."""
    if not getattr(trainer, "is_fsdp_enabled", False):
        return None
    return trainer.accelerator.get_state_dict(trainer.model_wrapped)


def unwrapped(trainer):
    """The PEFT model of a trainer, outside any DDP/FSDP wrapper."""
    return trainer.accelerator.unwrap_model(trainer.model)


@contextlib.contextmanager
def save_on_main(trainer):
    """``with save_on_main(trainer) as (write, state):`` only rank 0 writes; FSDP's shards gathered first.

    ``state`` is the full state dict to hand to ``save_pretrained`` (None outside FSDP); the other ranks wait
    until rank 0 has written, so no process exits before the outputs exist.
    """
    state = gathered_state_dict(trainer)
    try:
        yield is_main_process(), state
    finally:
        trainer.accelerator.wait_for_everyone()


def main(spec_path: str) -> None:
    """The launched process: run the spec's trainer with its arguments (``python -m rulebound.train.distributed``)."""
    setup_rank_logging()
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    log.info("rank %d of %d (local rank %d)%s", rank(), world_size(), local_rank(), ", FSDP" if fsdp_enabled() else "")
    trainer_function(spec["method"])(**spec["kwargs"])


if __name__ == "__main__":
    main(sys.argv[1])
