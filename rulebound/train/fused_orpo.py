"""ORPO without the [2B, S, vocab] logits tensor: TRL's loss and metrics, the lm_head taken chunk by chunk.

TRL's ``ORPOTrainer.concatenated_forward`` asks the model for its full logits (16 x 512 x 128k bf16 is
2 GB for a Llama-3 batch of 8 pairs, plus the log-softmax copies and their gradient). Everything ORPO
needs from them is small:

* the log-prob of the next token at each position (for the chosen NLL over prompt + answer, and the
  per-token *averaged* completion log-probs that enter the odds ratio), and
* the mean logit of the chosen and of the rejected half (a logged metric only).

So this trainer runs the decoder body to its final hidden states and feeds only the positions whose
next token counts through the lm_head, ``chunk_tokens`` rows at a time. The gradient of a token's
log-prob with respect to its hidden state is ``W[target] - softmax @ W``; the forward pass stores the
second term (one hidden-sized row per token), so backward needs no second trip through the vocabulary
unless the lm_head itself is trained. The mean logit is ``h . sum_v W_v / V``, exact without any logits.

Only ``concatenated_forward`` is replaced: the odds-ratio loss and every metric (``rewards/*``,
``logps/*``, ``logits/*``, ``nll_loss``, ``log_odds_ratio``, ``log_odds_chosen``) are TRL's own code.
Log-softmax runs in fp32 here (TRL's runs in the model dtype), so in bf16 the two agree to bf16 precision.

``padding_free=True`` packs the 2B sequences of a batch into one row with per-sequence position ids, so
no compute goes to padding (transformers turns packed position ids into a block-diagonal causal mask,
or varlen flash attention where installed). The ``logits/*`` metrics then average over real tokens
only; TRL's average includes padded positions. ``prefix_sharing=True`` packs the same way and also runs
each pair's shared prompt once (``rulebound.train.prefix_pack``); with ``attn_implementation="flex_attention"``
the pair mask is block-sparse.

On N processes (``rulebound.train.distributed``) the decoder runs inside DDP's forward, so gradients are
averaged over the ranks as TRL's path would have them, and the NLL term is normalised by the token count of
all ranks' rows: the one-process loss over the global batch. Under FSDP (the head's weight sharded outside
the forward) the trainer takes TRL's path.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from trl.experimental.orpo import ORPOTrainer

from rulebound.train.distributed import call_through, global_count, is_ddp
from rulebound.train.prefix_pack import attention_mask as prefix_attention_mask
from rulebound.train.prefix_pack import pack_pairs, right_padded

log = logging.getLogger(__name__)


class ChunkedTokenLogprobs(torch.autograd.Function):
    """log softmax(hidden @ weight.T)[targets] for each row of ``hidden``, never holding more than a chunk of logits.

    hidden [N, H], weight [V, H], targets [N, K] token ids -> [N, K] fp32 log-probs.
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_tokens):
        n = hidden.shape[0]
        logps = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)
        need_hidden_grad = ctx.needs_input_grad[0]
        expected = torch.empty_like(hidden) if need_hidden_grad else None  # softmax @ W, per token
        for start in range(0, n, chunk_tokens):
            end = min(start + chunk_tokens, n)
            logits = (hidden[start:end] @ weight.T).float()
            lse = torch.logsumexp(logits, dim=-1, keepdim=True)
            logps[start:end] = logits.gather(1, targets[start:end]) - lse
            if need_hidden_grad:
                probs = logits.sub_(lse).exp_()  # in place: one [chunk, V] fp32 buffer is all we hold
                expected[start:end] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
            del logits
        ctx.save_for_backward(hidden, weight, targets, expected)
        ctx.chunk_tokens = chunk_tokens
        return logps

    @staticmethod
    def backward(ctx, grad_logps):
        hidden, weight, targets, expected = ctx.saved_tensors
        grad_logps = grad_logps.float()
        grad_hidden = grad_weight = None
        if ctx.needs_input_grad[0]:
            # d logp(t)/dh = W[t] - softmax @ W
            grad_hidden = -grad_logps.sum(1, keepdim=True) * expected.float()
            for k in range(targets.shape[1]):
                grad_hidden += grad_logps[:, k : k + 1] * weight[targets[:, k]].float()
            grad_hidden = grad_hidden.to(hidden.dtype)
        if ctx.needs_input_grad[1]:  # a trained lm_head: recompute the softmax chunk by chunk
            grad_weight = torch.zeros_like(weight, dtype=torch.float32)
            for start in range(0, hidden.shape[0], ctx.chunk_tokens):
                end = min(start + ctx.chunk_tokens, hidden.shape[0])
                h, g = hidden[start:end], grad_logps[start:end]
                grad_logits = torch.softmax((h @ weight.T).float(), dim=-1).mul_(-g.sum(1, keepdim=True))
                grad_logits.scatter_add_(1, targets[start:end], g)
                grad_weight += grad_logits.T @ h.float()
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None


def _allow_recompiles(n: int) -> None:
    import torch._dynamo

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(n, getattr(torch._dynamo.config, name)))


class FusedORPOTrainer(ORPOTrainer):
    """``trl.experimental.orpo.ORPOTrainer`` with the same loss and metrics, at O(chunk x vocab) logits memory."""

    def __init__(self, *args, chunk_elements: int = 2**26, padding_free: bool = False, nll_scope: str = "full",
                 prefix_sharing: bool = False, pack_multiple: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if nll_scope not in ("full", "completion"):
            raise ValueError(f"nll_scope must be 'full' (TRL) or 'completion', got {nll_scope!r}")
        self.chunk_elements = chunk_elements  # fp32 logits held at once: 2**26 is 256 MB
        self.padding_free = padding_free
        # One pass over each pair's shared prompt (rulebound.train.prefix_pack); implies padding-free.
        self.prefix_sharing = prefix_sharing
        self.pack_multiple = pack_multiple
        # "full" is TRL's NLL over prompt and answer; "completion" is the ORPO paper's SFT term on the
        # chosen answer alone, which puts the weight where a rule's decision is made.
        self.nll_scope = nll_scope

    def _decoder_and_head(self, model):
        """The decoder body and the lm_head Linear of a (PEFT-wrapped) causal LM, or None where unsupported."""
        if self.is_encoder_decoder or self.aux_loss_enabled:
            return None
        if self.accelerator.unwrap_model(model) is not model:
            return None  # FSDP/DeepSpeed must see the forward call and hold the head's weight: use TRL's path
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
        head = base.get_output_embeddings()
        if decoder is None or decoder is base or type(head) is not nn.Linear or head.bias is not None:
            return None
        return decoder, head

    def _final_hidden(self, decoder, input_ids, attention_mask, n_chosen):
        """Final (normed) hidden states, [2B, S, H]; packed without padding (and shared prefixes) if asked."""
        if not right_padded(attention_mask) or not (self.padding_free or self.prefix_sharing):
            return decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        if self.prefix_sharing:
            implementation = getattr(decoder.config, "_attn_implementation", "eager")
            multiple = self.pack_multiple or 1
            if implementation == "flex_attention":
                # transformers compiles flex attention for static shapes: a packed length rounded up to 256
                # bounds the recompiles (each new length compiles once), so let dynamo keep them all.
                multiple = self.pack_multiple or 256
                _allow_recompiles(64)
            packed = pack_pairs(input_ids, attention_mask, n_chosen, self.padding_value, multiple)
            mask = prefix_attention_mask(packed, implementation, decoder.dtype)
            out = decoder(input_ids=packed.input_ids, position_ids=packed.position_ids, attention_mask=mask,
                          use_cache=False).last_hidden_state[0]
            return torch.cat([out, out.new_zeros(1, out.shape[-1])])[packed.index]
        keep = attention_mask.bool()
        position_ids = (attention_mask.cumsum(1) - 1)[keep]
        packed = decoder(input_ids=input_ids[keep][None], position_ids=position_ids[None], use_cache=False)
        packed = packed.last_hidden_state[0]
        hidden = packed.new_zeros(*input_ids.shape, packed.shape[-1])
        hidden[keep] = packed
        return hidden

    def concatenated_forward(self, model, batch):
        # Under DDP the decoder runs inside DDP's forward (call_through), so the ranks' gradients are averaged.
        wrapper = model if is_ddp(model) else None
        parts = self._decoder_and_head(wrapper.module if wrapper is not None else model)
        if parts is None:
            return super().concatenated_forward(model, batch)
        decoder, head = parts
        cb = self.concatenated_inputs(
            batch, is_encoder_decoder=False, padding_value=self.padding_value, device=self.accelerator.device
        )
        input_ids, attention_mask = cb["concatenated_input_ids"], cb["concatenated_attention_mask"]
        labels, n_chosen = cb["concatenated_labels"], batch["chosen_labels"].shape[0]
        # The autocast that accelerate wraps around model.forward (bf16/fp16 mixed precision) is not
        # entered when the decoder is called directly: enter it here, so LoRA matmuls run as they would.
        with self.accelerator.autocast():
            if wrapper is not None:
                hidden = call_through(wrapper, self._final_hidden, decoder, input_ids, attention_mask, n_chosen)
            else:
                hidden = self._final_hidden(decoder, input_ids, attention_mask, n_chosen)
        weight = head.weight
        hidden = hidden[:, :-1].to(weight.dtype)  # position t predicts token t+1

        # TRL: NLL over every real token of the chosen rows; logps averaged over completion labels of all rows.
        next_ids, next_labels = input_ids[:, 1:], labels[:, 1:]
        label_mask = next_labels != -100
        nll_mask = (attention_mask[:, 1:] == 1) if self.nll_scope == "full" else label_mask.clone()
        nll_mask[n_chosen:] = False
        needed = nll_mask | label_mask
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None].expand_as(needed)[needed]
        targets = torch.stack([next_ids[needed], next_labels[needed].clamp_min(0)], dim=-1)

        chunk = max(1, self.chunk_elements // weight.shape[0])
        logps = ChunkedTokenLogprobs.apply(hidden[needed], weight, targets, chunk)
        # Over the tokens of all ranks' rows: on N processes the same mean as one process over the global batch.
        nll_loss = -(logps[:, 0] * nll_mask[needed]).sum() / global_count(nll_mask.sum(), self.accelerator)
        completion_sum = torch.zeros(input_ids.shape[0], device=logps.device, dtype=logps.dtype)
        completion_sum = completion_sum.index_add(0, rows, logps[:, 1] * label_mask[needed])
        all_logps = completion_sum / label_mask.sum(-1)

        # Mean logit of each half over all its [n, S-1, V] entries, as TRL logs it, without the logits.
        with torch.no_grad():
            column_sum = weight.sum(0, dtype=torch.float32)
            per_row = (hidden.float() @ column_sum).sum(-1)
            denom = hidden.shape[1] * weight.shape[0]
            chosen_logits = per_row[:n_chosen].sum() / (n_chosen * denom)
            rejected_logits = per_row[n_chosen:].sum() / ((per_row.shape[0] - n_chosen) * denom)

        # TRL calls .detach().mean() on the logits it gets back; a 0-d mean is what that computes.
        return all_logps[:n_chosen], all_logps[n_chosen:], chosen_logits, rejected_logits, nll_loss
