"""Sampling for GRPO rollouts: a static KV cache, each prompt's prefix once per group, CUDA-graph decoding.

TRL's regular GRPO path calls ``model.generate`` with a dynamic cache: every new token is a full Python
trip through the model (about a thousand small kernel launches for a 24-layer model with LoRA on every
linear layer), so a 0.5B model decodes at the speed of the launch queue, not of the GPU. This sampler:

* prefills each distinct prompt once (a GRPO batch holds every prompt ``num_generations`` times) and
  copies its keys and values into the rows of its group;
* decodes into a ``transformers.StaticCache`` whose tensors never move, with a preallocated attention
  mask, positions and output buffer, so one decode step has fixed shapes and addresses;
* on CUDA, captures that step once in a CUDA graph and replays it (one launch per token instead of a
  thousand); on a CPU the same step runs eagerly.

It samples from the same distribution as ``generate``: next-token logits in fp32, then HF's suppress-tokens,
temperature, top-k, top-p and min-p processing in HF's order, then a Gumbel-max draw, which picks token i with
probability softmax(scores)_i exactly as ``torch.multinomial`` does. Rows stop at their first end-of-sequence
token; the returned completions keep it, as TRL's own path does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    max_new_tokens: int
    eos_ids: tuple[int, ...]
    pad_id: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float | None = None
    suppress_ids: tuple[int, ...] = field(default_factory=tuple)


def settings_from_generation_kwargs(kwargs: dict, eos_ids, pad_id: int) -> tuple[SamplingSettings | None, str]:
    """SamplingSettings for TRL's generation kwargs, or (None, why) where this sampler does not do what they ask."""
    known = {"max_new_tokens", "do_sample", "pad_token_id", "bos_token_id", "eos_token_id", "temperature", "top_p",
             "top_k", "min_p", "repetition_penalty", "cache_implementation", "suppress_tokens"}
    extra = sorted(k for k, v in kwargs.items() if k not in known and v is not None)
    if extra:
        return None, f"generation kwargs {extra} are not supported by the static sampler"
    if not kwargs.get("do_sample", True):
        return None, "do_sample=False"
    if (kwargs.get("repetition_penalty") or 1.0) != 1.0:
        return None, "repetition_penalty != 1"
    temperature = float(kwargs.get("temperature") or 1.0)
    if temperature <= 0:
        return None, "temperature <= 0"
    eos = kwargs.get("eos_token_id", eos_ids)
    eos = tuple(int(e) for e in ([eos] if isinstance(eos, int) else (eos or [])))
    pad = kwargs.get("pad_token_id", pad_id)
    return SamplingSettings(
        max_new_tokens=int(kwargs["max_new_tokens"]), eos_ids=eos, pad_id=int(pad if pad is not None else eos[0]),
        temperature=temperature, top_k=int(kwargs.get("top_k") or 0), top_p=float(kwargs.get("top_p") or 1.0),
        min_p=kwargs.get("min_p"), suppress_ids=tuple(int(i) for i in (kwargs.get("suppress_tokens") or ())),
    ), ""


def process_scores(scores: torch.Tensor, s: SamplingSettings, suppress: torch.Tensor | None = None) -> torch.Tensor:
    """HF's logits processing for sampling, in its order (fp32 [N, V] in, masked fp32 scores out).

    ``suppress`` is ``s.suppress_ids`` as a tensor on the scores' device (made once: no copy inside a graph).
    """
    if s.suppress_ids:
        if suppress is None:
            suppress = torch.tensor(s.suppress_ids, device=scores.device)
        scores = scores.index_fill(1, suppress, float("-inf"))
    if s.temperature != 1.0:
        scores = scores / s.temperature
    if s.top_k and s.top_k < scores.shape[-1]:
        kth = torch.topk(scores, s.top_k).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if s.top_p < 1.0:  # transformers.TopPLogitsWarper
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - s.top_p)
        remove_sorted[..., -1:] = False
        scores = scores.masked_fill(remove_sorted.scatter(1, sorted_idx, remove_sorted), float("-inf"))
    if s.min_p is not None:  # transformers.MinPLogitsWarper
        probs = torch.softmax(scores, dim=-1)
        remove = probs < s.min_p * probs.amax(dim=-1, keepdim=True)
        remove &= scores != scores.amax(dim=-1, keepdim=True)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def gumbel_sample(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row from softmax(scores): argmax(scores + Gumbel noise) (graph-safe, no multinomial)."""
    u = torch.rand(scores.shape, device=scores.device, dtype=torch.float32, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_(min=torch.finfo(torch.float32).tiny)))
    return (scores + gumbel).argmax(dim=-1)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class _Decoder:
    """The static state of one (rows, cache length) shape: cache, buffers and, on CUDA, the captured step."""

    def __init__(self, model, rows: int, prompt_len: int, settings: SamplingSettings, mask_kind: str):
        from transformers import StaticCache

        config = model.config.get_text_config(decoder=True)
        self.model, self.settings, self.mask_kind = model, settings, mask_kind
        self.rows, self.prompt_len = rows, prompt_len
        self.length = prompt_len + settings.max_new_tokens
        param = next(model.parameters())
        device, dtype = param.device, _activation_dtype(model)
        self.cache = StaticCache(config=config, max_cache_len=self.length)
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.cache.early_initialization(batch_size=rows, num_heads=kv_heads, head_dim=head_dim, dtype=dtype,
                                        device=device)
        self.mask = torch.zeros(rows, 1, 1, self.length, dtype=torch.bool, device=device)
        self.mask_dtype = dtype
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.positions = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.column = torch.zeros(1, dtype=torch.long, device=device)  # cache slot of the token fed in next
        self.done = torch.zeros(rows, dtype=torch.bool, device=device)
        self.out = torch.full((rows, settings.max_new_tokens), settings.pad_id, dtype=torch.long, device=device)
        self.eos = torch.tensor(settings.eos_ids or (-1,), device=device)
        self.suppress = torch.tensor(settings.suppress_ids, dtype=torch.long, device=device)
        self.graph = None
        self.graph_failed = device.type != "cuda"

    def attention_mask(self):
        if self.mask_kind == "bool":
            return self.mask
        return (~self.mask).to(self.mask_dtype) * torch.finfo(self.mask_dtype).min

    def choose(self, logits: torch.Tensor) -> None:
        """Sample the next token of every row from fp32 logits [rows, V]; write it to tokens and out."""
        nxt = gumbel_sample(process_scores(logits, self.settings, self.suppress))
        nxt = torch.where(self.done, torch.full_like(nxt, self.settings.pad_id), nxt)
        self.done |= (nxt[:, None] == self.eos[None]).any(1)
        self.tokens.copy_(nxt[:, None])
        self.out.index_copy_(1, self.column - (self.prompt_len - 1), nxt[:, None])

    def step(self) -> None:
        """One decode step: the last token in, the next one sampled (fixed shapes, no host sync)."""
        self.mask.index_fill_(3, self.column, True)
        out = self.model(input_ids=self.tokens, position_ids=self.positions, attention_mask=self.attention_mask(),
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        self.positions.add_(1)
        self.choose(out.logits[:, -1].float())
        self.column.add_(1)

    def run_step(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        if self.graph_failed:
            self.step()
            return
        # The warm-up on a side stream is a real decode step; the capture after it records and runs nothing,
        # and the next replay is the next step.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.step()
        torch.cuda.current_stream().wait_stream(stream)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.step()
        except Exception as exc:  # anything in the model that syncs with the host or is not capturable
            log.warning("CUDA graph capture of the decode step failed (%s); decoding eagerly", exc)
            self.graph_failed = True
            torch.cuda.synchronize()
            self.step()
            return
        self.graph = graph


def _activation_dtype(model) -> torch.dtype:
    """The dtype of the base weights (LoRA weights may be fp32 beside a bf16 base)."""
    embed = model.get_input_embeddings()
    return embed.weight.dtype if embed is not None else next(model.parameters()).dtype


def mask_kind(model) -> str | None:
    """How the decode step passes its 4-D mask: boolean for SDPA, additive for eager; None if unsupported."""
    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    return {"sdpa": "bool", "eager": "additive"}.get(implementation)


class StaticSampler:
    """Samples completions for a list of token-id prompts (see the module docstring)."""

    def __init__(self, settings: SamplingSettings, *, prompt_multiple: int = 32, sync_every: int = 8,
                 use_graphs: bool = True):
        self.settings = settings
        self.prompt_multiple = prompt_multiple  # prompt lengths round up to this: few shapes, few graphs
        self.sync_every = sync_every  # steps between checks that every row has finished
        self.use_graphs = use_graphs
        self._decoders: dict[tuple, _Decoder] = {}

    def unsupported(self, model) -> str | None:
        if mask_kind(model) is None:
            return f"attention implementation {model.config._attn_implementation!r} (sdpa or eager needed)"
        types = set(getattr(model.config.get_text_config(decoder=True), "layer_types", None) or ["full_attention"])
        if types != {"full_attention"}:
            return f"layer types {sorted(types)} (only full attention layers)"
        return None

    def _decoder(self, model, rows: int, prompt_len: int) -> _Decoder:
        key = (id(model), rows, prompt_len)
        if key not in self._decoders:
            self._decoders.clear()  # one shape at a time: a new shape frees the old cache and graph
            self._decoders[key] = _Decoder(model, rows, prompt_len, self.settings, mask_kind(model))
            if not self.use_graphs:
                self._decoders[key].graph_failed = True
        return self._decoders[key]

    @torch.no_grad()
    def generate(self, model, prompt_ids: list[list[int]]) -> list[list[int]]:
        """Completion token ids for each prompt (up to and including the first end-of-sequence token)."""
        was_training = model.training
        model.eval()  # gradient checkpointing layers drop the cache in training mode
        try:
            return self._generate(model, prompt_ids)
        finally:
            model.train(was_training)

    def _generate(self, model, prompt_ids):
        s = self.settings
        unique: dict[tuple, int] = {}
        row_of = [unique.setdefault(tuple(ids), len(unique)) for ids in prompt_ids]
        prompts = list(unique)
        if not prompts or min(map(len, prompts)) == 0:
            raise ValueError("StaticSampler.generate got an empty prompt: every prompt needs at least one token")
        device = next(model.parameters()).device
        prompt_len = _round_up(max(len(p) for p in prompts), self.prompt_multiple)
        d = self._decoder(model, len(prompt_ids), prompt_len)

        # Prefill each distinct prompt once, left-padded to prompt_len, then copy its cache into its rows.
        ids = torch.full((len(prompts), prompt_len), s.pad_id, dtype=torch.long, device=device)
        keep = torch.zeros((len(prompts), prompt_len), dtype=torch.long, device=device)
        for i, p in enumerate(prompts):
            ids[i, prompt_len - len(p):] = torch.tensor(p, device=device)
            keep[i, prompt_len - len(p):] = 1
        positions = (keep.cumsum(1) - 1).clamp_min(0)
        out = model(input_ids=ids, attention_mask=keep, position_ids=positions, use_cache=True, logits_to_keep=1)
        rows = torch.tensor(row_of, device=device)
        for layer, filled in zip(d.cache.layers, out.past_key_values.layers):
            layer.keys[:, :, :prompt_len].copy_(filled.keys[rows])
            layer.values[:, :, :prompt_len].copy_(filled.values[rows])
            layer.cumulative_length.fill_(prompt_len)
        d.mask.zero_()
        d.mask[:, 0, 0, :prompt_len] = keep[rows].bool()
        d.positions.copy_(keep.sum(1)[rows, None])
        d.done.zero_()
        d.out.fill_(s.pad_id)
        d.column.fill_(prompt_len - 1)  # the last prompt slot: its logits choose completion token 0
        d.choose(out.logits[rows, -1].float())
        d.column.add_(1)
        del out

        for t in range(1, s.max_new_tokens):
            if t % self.sync_every == 0 and bool(d.done.all()):
                break
            d.run_step()
        completions = d.out.tolist()
        eos = set(s.eos_ids)
        result = []
        for tokens in completions:
            end = next((i for i, tok in enumerate(tokens) if tok in eos), len(tokens) - 1)
            result.append(tokens[: end + 1])
        return result
