"""Shared-prefix packing: layout, positions, mask, and hidden states equal to the padded two-row forward."""

from __future__ import annotations

import pytest
import torch

from rulebound.train.prefix_pack import CHOSEN, PAD, REJECTED, SHARED, attention_mask, pack_pairs


def rows():
    # pair 0: prompt [5 6 7], chosen [8 9], rejected [10]; pair 1: prompt [5 6], chosen [11], rejected [12 13 14]
    ids = torch.tensor([
        [5, 6, 7, 8, 9, 0],
        [5, 6, 11, 0, 0, 0],
        [5, 6, 7, 10, 0, 0],
        [5, 6, 12, 13, 14, 0],
    ])
    return ids, (ids != 0).long()


def test_layout_positions_and_index():
    ids, mask = rows()
    packed = pack_pairs(ids, mask, n_pairs=2, pad_id=0)
    assert packed.shared == [3, 2]
    assert packed.input_ids[0].tolist() == [5, 6, 7, 8, 9, 10, 5, 6, 11, 12, 13, 14]
    assert packed.position_ids[0].tolist() == [0, 1, 2, 3, 4, 3, 0, 1, 2, 2, 3, 4]
    assert packed.segment.tolist() == [SHARED] * 3 + [CHOSEN] * 2 + [REJECTED] + [SHARED] * 2 + [CHOSEN] + \
        [REJECTED] * 3
    # every real token of the original rows maps to the packed token with the same id; padding to the zero row
    real = mask.bool()
    assert torch.equal(packed.input_ids[0][packed.index[real]], ids[real])
    assert (packed.index[~real] == packed.length).all()
    assert packed.real_tokens == 12 and int(mask.sum()) == 17


def test_mask_hides_the_chosen_tail_from_the_rejected_tail_and_other_pairs():
    ids, mask = rows()
    packed = pack_pairs(ids, mask, n_pairs=2, pad_id=0)
    dense = attention_mask(packed, "sdpa")[0, 0]
    assert dense.dtype == torch.bool
    # the rejected token of pair 0 (packed 5) sees the shared prompt and itself, not the chosen tail
    assert dense[5].tolist()[:6] == [True, True, True, False, False, True]
    assert not dense[6:, :6].any(), "pair 1 never sees pair 0"
    assert not dense.triu(1).any(), "causal"
    additive = attention_mask(packed, "eager")[0, 0]
    assert (additive[dense] == 0).all() and (additive[~dense] < -1e30).all()


def test_padding_to_a_multiple_forms_its_own_block():
    ids, mask = rows()
    packed = pack_pairs(ids, mask, n_pairs=2, pad_id=0, multiple=8)
    assert packed.length == 16 and packed.real_tokens == 12
    assert packed.segment[12:].tolist() == [PAD] * 4
    dense = attention_mask(packed, "sdpa")[0, 0]
    assert not dense[12:, :12].any() and not dense[:12, 12:].any()
    assert (packed.index[~mask.bool()] == 16).all()


def test_rejects_left_padding_and_a_wrong_row_count():
    ids, mask = rows()
    with pytest.raises(ValueError, match="right-padded"):
        pack_pairs(ids.flip(1), mask.flip(1), n_pairs=2, pad_id=0)
    with pytest.raises(ValueError, match="expected 4 rows"):
        pack_pairs(ids[:3], mask[:3], n_pairs=2, pad_id=0)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_packed_hidden_states_equal_the_padded_forward(implementation):
    from transformers import LlamaConfig, LlamaModel

    config = LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         attn_implementation=implementation)
    torch.manual_seed(0)
    model = LlamaModel(config).eval()
    ids, mask = rows()
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
        packed = pack_pairs(ids, mask, n_pairs=2, pad_id=0, multiple=8)
        out = model(input_ids=packed.input_ids, position_ids=packed.position_ids,
                    attention_mask=attention_mask(packed, implementation)).last_hidden_state[0]
    hidden = torch.cat([out, out.new_zeros(1, out.shape[-1])])[packed.index]
    real = mask.bool()
    torch.testing.assert_close(hidden[real], expected[real], atol=1e-5, rtol=1e-5)
