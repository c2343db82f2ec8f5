"""Training backends: Unsloth where a CUDA GPU and the package are present, else transformers + PEFT.

Unsloth is an accelerator, not an API the pipeline is written against: both backends take the
same LoRA settings and return a PEFT model and its tokenizer, so the trainer and every output
downstream are the same.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from rulebound.errors import ConfigError
from rulebound.train.distributed import fsdp_enabled, local_rank, world_size

log = logging.getLogger(__name__)

BACKENDS = ("auto", "unsloth", "transformers")
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    seed: int = 3407

    @classmethod
    def from_config(cls, cfg: dict) -> "LoraSettings":
        known = {k: cfg[k] for k in ("r", "alpha", "dropout", "target_modules", "seed") if k in cfg}
        return cls(**known)

    def peft_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def unsloth_importable() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def resolve_backend(requested: str) -> str:
    """Turn ``auto`` into a concrete backend; refuse ``unsloth`` where it cannot run."""
    if requested not in BACKENDS:
        raise ConfigError(f"train.backend must be one of {', '.join(BACKENDS)}; got {requested!r}.")
    several = world_size() > 1
    if requested == "auto":
        return "unsloth" if cuda_available() and unsloth_importable() and not several else "transformers"
    if requested == "unsloth":
        if several:
            raise ConfigError("train.backend is 'unsloth', which trains on one GPU, but this rule runs on "
                              f"{world_size()} processes: use backend: auto (transformers + PEFT under DDP/FSDP) "
                              "or set the rule's gpu resource to 1.")
        if not cuda_available():
            raise ConfigError(
                "train.backend is 'unsloth' but no CUDA GPU is visible here. Use backend: auto "
                "(transformers + PEFT on CPU) or run the training rule on a GPU node (--profile profiles/slurm-a100)."
            )
        if not unsloth_importable():
            raise ConfigError("train.backend is 'unsloth' but unsloth is not installed: pip install '.[gpu]'.")
    return requested


def uses_fast_path(cfg: dict, cuda: bool | None = None) -> bool:
    """Whether an ORPO ``train`` section runs on rulebound's fastest verified path.

    That path (2.7x stock Unsloth's samples/s, 2.1x in another run, at its peak memory on the 3B anchor;
    docs/benchmarks.md) is transformers + PEFT with flex attention, every pair's shared prompt computed
    once, compiled decoder layers and the chunked ORPO head. It needs a CUDA GPU, ``trainer: fused`` and 16-bit weights; an
    explicit ``backend: unsloth``, ``fast_path: false`` or ``trainer: trl`` (TRL's plain path) turn it off.
    """
    if cuda is None:
        cuda = cuda_available()
    return (cuda and bool(cfg.get("fast_path", True)) and cfg.get("trainer", "fused") == "fused"
            and not cfg.get("load_in_4bit", False) and cfg.get("backend", "auto") in ("auto", "transformers"))


def training_dtype(backend: str, precision: str = "auto"):
    """bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU (bf16 is ~20x slower there)."""
    import torch

    if precision != "auto":
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if not cuda_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_for_training(
    model_dir: str,
    lora: LoraSettings,
    backend: str = "auto",
    *,
    max_seq_length: int = 1024,
    load_in_4bit: bool = False,
    precision: str = "auto",
    gradient_checkpointing: bool = False,
    init_adapter: str | None = None,
    attn_implementation: str | None = None,
    liger_kernels: bool = False,
    compile_layers: bool = False,
):
    """Load ``model_dir`` with LoRA adapters attached. Returns (peft_model, tokenizer, backend).

    With ``init_adapter`` (a PEFT adapter folder, e.g. SFT's before GRPO) the LoRA starts from that adapter's
    weights and shape, trainable, instead of from scratch; ``lora`` then only gives the seed.
    On the transformers backend, ``attn_implementation`` (``sdpa``, ``flex_attention``, ``eager``) picks the
    attention kernel, ``liger_kernels`` swaps in liger-kernel's Triton RMSNorm, RoPE and SwiGLU (GPU only) and
    ``compile_layers`` wraps every decoder layer in ``torch.compile`` (dynamic shapes).
    """
    backend = resolve_backend(backend)
    dtype = training_dtype(backend, precision)
    if load_in_4bit and not cuda_available():
        raise ConfigError("train.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false on CPU.")
    if init_adapter:
        lora = adapter_lora_settings(init_adapter, seed=lora.seed)
    if backend == "unsloth":
        model, tokenizer = _load_unsloth(model_dir, lora, dtype, max_seq_length, load_in_4bit, gradient_checkpointing)
        if init_adapter:
            _load_adapter_weights(model, init_adapter)
    else:
        model, tokenizer = _load_transformers(model_dir, lora, dtype, load_in_4bit, gradient_checkpointing,
                                              init_adapter, attn_implementation, liger_kernels)
        if compile_layers:
            for layer in model.get_base_model().get_decoder().layers:
                layer.compile(dynamic=True)
    log.info("backend=%s dtype=%s 4bit=%s trainable=%s", backend, dtype, load_in_4bit, _trainable(model))
    return model, tokenizer, backend


def _trainable(model) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,}/{total:,}"


def adapter_lora_settings(adapter_dir: str, seed: int = 3407) -> LoraSettings:
    """The LoRA shape an existing adapter folder was trained with (its adapter_config.json)."""
    config_path = Path(adapter_dir) / "adapter_config.json"
    if not config_path.is_file():
        raise ConfigError(f"The initial adapter {adapter_dir} has no adapter_config.json: train the method it "
                          "starts from first, or point init at a PEFT adapter folder.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    targets = config.get("target_modules") or ALL_LINEAR
    return LoraSettings(r=int(config.get("r", 16)), alpha=int(config.get("lora_alpha", 16)),
                        dropout=float(config.get("lora_dropout", 0.0)),
                        target_modules=[targets] if isinstance(targets, str) else sorted(targets), seed=seed)


def _load_adapter_weights(model, adapter_dir: str) -> None:
    """Copy a saved adapter's weights into a PEFT model built with the same LoRA shape (the Unsloth path)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(Path(adapter_dir) / "adapter_model.safetensors")))
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise ConfigError(f"The initial adapter {adapter_dir} does not fit the model (missing {missing[:3]}, "
                          f"unexpected {list(result.unexpected_keys)[:3]}): was it trained on another base model?")


def _load_transformers(model_dir, lora, dtype, load_in_4bit, gradient_checkpointing, init_adapter=None,
                       attn_implementation=None, liger_kernels=False):
    import torch
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if liger_kernels and not torch.cuda.is_available():
        raise ConfigError("liger_kernels needs a CUDA GPU (Triton kernels); turn it off on CPU.")
    kwargs = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
        )
        kwargs["device_map"] = {"": local_rank()}
    elif torch.cuda.is_available() and not fsdp_enabled():  # FSDP loads on the CPU and moves its shards
        kwargs["device_map"] = {"": local_rank()}  # each data-parallel process its own GPU
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    if liger_kernels:
        try:
            from liger_kernel.transformers import _apply_liger_kernel_to_instance
        except ImportError as err:
            raise ConfigError("liger_kernels is on but liger-kernel is not installed: pip install '.[gpu]'.") from err
        # The ORPO head is rulebound's own chunked loss: only the decoder's kernels are swapped.
        _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                        fused_linear_cross_entropy=False)
    if load_in_4bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    torch.manual_seed(lora.seed)
    if init_adapter:
        model = PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
    else:
        model = get_peft_model(model, lora.peft_config())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def _load_unsloth(model_dir, lora, dtype, max_seq_length, load_in_4bit, gradient_checkpointing):
    # Imported only here: unsloth patches transformers on import and needs a GPU.
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_dir,
        max_seq_length=max_seq_length,
        dtype=dtype,
        load_in_4bit=load_in_4bit,
        local_files_only=True,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        use_gradient_checkpointing="unsloth" if gradient_checkpointing else False,
        random_state=lora.seed,
    )
    return model, tokenizer
