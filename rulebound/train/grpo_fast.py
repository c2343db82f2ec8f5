"""GRPO with fast rollouts: TRL's GRPOTrainer, its loss and metrics, with two parts replaced.

1. **Generation** (where GRPO spends most of its time, TRL issues #2610, #2971): ``_generate_single_turn``
   samples with ``rulebound.train.fast_generate.StaticSampler`` (each prompt prefilled once for its group,
   a static KV cache, one CUDA-graph replay per token) instead of ``model.generate``. Same distribution:
   fp32 logits, HF's processing order, an exact categorical draw.
2. **Log-probs** for the loss, the old policy and the reference model go through TRL's own chunked path
   (``GRPOTrainer._chunked_logps``, the lm_head 8,192 tokens at a time), so the [rows, completion, vocab]
   logits are never held; the values are TRL's (tested against its full-logits path).

Rewards, advantages, the clipped objective, the KL term and every logged metric are TRL's code. Whatever the
sampler does not cover (vLLM, TRL's continuous batching, tools, rollout functions, vision models,
repetition penalties, other generation kwargs, attention kernels other than SDPA/eager) runs TRL's path
unchanged, with one log line saying why.
"""

from __future__ import annotations

import logging

from torch import nn
from trl import GRPOTrainer

from rulebound.errors import ConfigError
from rulebound.train.backend import cuda_available
from rulebound.train.fast_generate import StaticSampler, settings_from_generation_kwargs

log = logging.getLogger(__name__)

TRAINERS = ("fast", "trl")


def uses_fast_grpo(cfg: dict, cuda: bool | None = None) -> bool:
    """Whether a GRPO method's settings run FastGRPOTrainer: ``trainer: fast`` (the default) on a CUDA GPU.

    On a CPU the default stays TRL's GRPOTrainer (its figures are the README's); ``trainer: trl``,
    ``backend: unsloth``, ``load_in_4bit`` or ``use_vllm`` pick TRL's (or Unsloth's) path on a GPU too.
    """
    trainer = cfg.get("trainer", "fast")
    if trainer not in TRAINERS:
        raise ConfigError(f"GRPO trainer must be one of {', '.join(TRAINERS)}; got {trainer!r}.")
    if cuda is None:
        cuda = cuda_available()
    return (cuda and trainer == "fast" and cfg.get("backend", "auto") in ("auto", "transformers")
            and not cfg.get("load_in_4bit", False) and not cfg.get("use_vllm", False))


class FastGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` with static-cache CUDA-graph sampling and chunked log-probs (module docstring)."""

    def __init__(self, *args, prompt_multiple: int = 32, cuda_graphs: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampler, self.sampler_off = None, self._sampler_unsupported()
        if self.sampler_off is None:
            settings, why = settings_from_generation_kwargs(
                self.generation_kwargs, self.eos_token_ids, self._tokenizer.pad_token_id)
            self.sampler_off = why or None
            if settings is not None:
                self.sampler = StaticSampler(settings, prompt_multiple=prompt_multiple, use_graphs=cuda_graphs)
                self.sampler_off = self.sampler.unsupported(self.accelerator.unwrap_model(self.model))
                if self.sampler_off:
                    self.sampler = None
        if self.sampler_off:
            log.info("FastGRPOTrainer: TRL's generation path (%s)", self.sampler_off)
        self.chunked_logps_off = self._chunked_unsupported()
        if self.chunked_logps_off:
            log.info("FastGRPOTrainer: TRL's full-logits log-probs (%s)", self.chunked_logps_off)

    def _sampler_unsupported(self) -> str | None:
        for flag, why in ((self.use_vllm, "use_vllm"), (self.use_transformers_continuous_batching,
                          "use_transformers_continuous_batching"), (self._is_vlm, "a vision-language model"),
                          (self.tools, "tools"), (self.rollout_func is not None, "a rollout function"),
                          (self.environment_factories is not None, "environments")):
            if flag:
                return why
        return None

    def _chunked_unsupported(self) -> str | None:
        if self.use_liger_kernel:
            return None  # TRL already takes the chunked path
        if self._is_vlm or self._entropy_bonus_enabled:
            return "a vision-language model" if self._is_vlm else "an entropy bonus (needs entropy gradients)"
        head = self.accelerator.unwrap_model(self.model).get_output_embeddings()
        if type(head) is not nn.Linear:
            return f"the lm_head is a {type(head).__name__}, not a plain Linear"
        return None

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.sampler is None or images is not None or multimodal_fields:
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        from trl.extras.profiling import profiling_context
        from trl.models import unwrap_model_for_generation

        with (profiling_context(self, "rulebound.static_sampler"),
              unwrap_model_for_generation(self.model_wrapped, self.accelerator,
                                          gather_deepspeed3_params=self.args.ds3_gather_for_generation) as unwrapped):
            completion_ids = self.sampler.generate(unwrapped, [list(p) for p in prompt_ids])
        return completion_ids, None

    def _get_per_token_logps_and_entropies(self, model, *args, batch_size=None, compute_aux_loss=False, **kwargs):
        unwrapped = self.accelerator.unwrap_model(model)
        if self.chunked_logps_off or compute_aux_loss or unwrapped is not model or self.is_fsdp_enabled:
            return super()._get_per_token_logps_and_entropies(model, *args, batch_size=batch_size,
                                                              compute_aux_loss=compute_aux_loss, **kwargs)
        return self._chunked_logps(unwrapped, *args, **kwargs)
