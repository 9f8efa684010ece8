"""MultiheadAttention: hand-computed weights, a hand-written multi-head reference, torch's
nn.MultiheadAttention (same parameters, outputs and weights), and the weights are the ones used."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cosmos.layers.blocks import ResidualAttentionBlock
from cosmos.layers.multihead_attention import MultiheadAttention
from cosmos.models.cross_attention import AttentionalCrossPooler, CrossAttention


def _identity_module() -> MultiheadAttention:
    """Width 2, one head, q = k = v = x, out_proj = identity."""
    attn = MultiheadAttention(2, 1)
    with torch.no_grad():
        attn.in_proj_weight.copy_(torch.eye(2).repeat(3, 1))
        attn.in_proj_bias.zero_()
        attn.out_proj.weight.copy_(torch.eye(2))
        attn.out_proj.bias.zero_()
    return attn


def test_hand_computed_weights_and_output() -> None:
    """x = [[1, 0], [0, 2]]: scores x xᵀ / √2 = [[1, 0], [0, 4]] / √2."""
    attn = _identity_module()
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    e1, e4 = math.exp(1 / math.sqrt(2)), math.exp(4 / math.sqrt(2))
    expected = torch.tensor([[e1 / (e1 + 1), 1 / (e1 + 1)], [1 / (1 + e4), e4 / (1 + e4)]])
    weights = attn.attention_weights(x)
    assert weights.shape == (1, 1, 2, 2) and weights.dtype == torch.float32
    assert torch.allclose(weights[0, 0], expected, atol=1e-6)
    assert torch.allclose(weights[0, 0], torch.tensor([[0.669760, 0.330240],
                                                       [0.055807, 0.944193]]), atol=1e-6)
    # output = weights · v with v = x: row 0 = [0.669760, 2 * 0.330240]
    assert torch.allclose(attn(x)[0], expected @ x[0], atol=1e-6)
    causal = attn.attention_weights(x, is_causal=True)[0, 0]  # token 0 sees only itself
    assert torch.allclose(causal, torch.stack([torch.tensor([1.0, 0.0]), expected[1]]), atol=1e-6)


def _reference_weights(attn: MultiheadAttention, query: torch.Tensor, keys: torch.Tensor,
                       hidden: torch.Tensor = None) -> torch.Tensor:
    """softmax(Q Kᵀ / √d) per head, written out; hidden (Lq, Lk) or (B, 1, Lk) True = masked."""
    w, h = attn.width, attn.heads
    d = w // h
    q = query @ attn.in_proj_weight[:w].T + attn.in_proj_bias[:w]
    k = keys @ attn.in_proj_weight[w:2 * w].T + attn.in_proj_bias[w:2 * w]
    out = torch.empty(query.shape[0], h, query.shape[1], keys.shape[1])
    for head in range(h):
        cols = slice(head * d, (head + 1) * d)
        scores = q[..., cols] @ k[..., cols].transpose(-2, -1) / math.sqrt(d)
        if hidden is not None:
            scores = scores.masked_fill(hidden, float("-inf"))
        out[:, head] = torch.softmax(scores, dim=-1)
    return out


def test_weights_agree_with_a_hand_written_multihead_reference() -> None:
    torch.manual_seed(0)
    attn = MultiheadAttention(8, 2)
    with torch.no_grad():
        attn.in_proj_bias.normal_()
    x, query = torch.randn(3, 5, 8), torch.randn(3, 2, 8)
    with torch.no_grad():
        assert torch.allclose(attn.attention_weights(x), _reference_weights(attn, x, x),
                              atol=1e-6)
        assert torch.allclose(attn.attention_weights(query, x), _reference_weights(attn, query, x),
                              atol=1e-6)
        pad = torch.zeros(3, 5, dtype=torch.bool)
        pad[0, 3:], pad[2, 1:] = True, True
        masked = attn.attention_weights(query, x, pad)
        assert torch.allclose(masked, _reference_weights(attn, query, x, pad[:, None]), atol=1e-6)
        assert (masked[0, :, :, 3:] == 0).all() and (masked[2, :, :, 0] == 1).all()
        later = torch.ones(5, 5, dtype=torch.bool).triu(1)
        causal = attn.attention_weights(x, is_causal=True)
        assert torch.allclose(causal, _reference_weights(attn, x, x, later), atol=1e-6)


def test_the_weights_are_the_ones_the_forward_pass_uses() -> None:
    torch.manual_seed(1)
    attn = MultiheadAttention(16, 4)
    x, query = torch.randn(2, 6, 16), torch.randn(2, 3, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        for args, kwargs in (((x,), {"is_causal": True}), ((query, x, pad), {}), ((x,), {})):
            weights = attn.attention_weights(*args, **kwargs)
            rebuilt = attn.apply_weights(weights, x)
            assert torch.allclose(rebuilt, attn(*args, **kwargs), atol=1e-6)


@pytest.mark.parametrize("cross", [False, True])
def test_matches_torch_multihead_attention(cross: bool) -> None:
    """Same state dict keys; loaded into nn.MultiheadAttention, same outputs and weights."""
    torch.manual_seed(2)
    ours = MultiheadAttention(12, 3)
    theirs = nn.MultiheadAttention(12, 3, batch_first=True)
    assert set(ours.state_dict()) == set(theirs.state_dict()) == {
        "in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"}
    with torch.no_grad():
        ours.in_proj_bias.normal_()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 12)
    query = torch.randn(2, 3, 12) if cross else x
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    with torch.no_grad():
        out, weights = theirs(query, x, x, key_padding_mask=pad, average_attn_weights=False)
        assert torch.allclose(ours(query, x if cross else None, pad), out, atol=1e-6)
        assert torch.allclose(ours.attention_weights(query, x if cross else None, pad), weights,
                              atol=1e-6)


def test_one_module_behind_blocks_and_poolers() -> None:
    assert CrossAttention is MultiheadAttention
    assert type(ResidualAttentionBlock(8, 2).attn) is MultiheadAttention
    assert type(AttentionalCrossPooler(8, 2).attn) is MultiheadAttention


def test_self_projection_is_one_packed_product() -> None:
    """Self-attention projects q|k|v with one product over the packed weight (as OpenCLIP):
    bit for bit the same as F.linear with in_proj_weight, then split."""
    torch.manual_seed(3)
    attn = MultiheadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    q, k, v = attn.project(x)
    packed = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(2, 5, 3, 2, 4)
    for i, t in enumerate((q, k, v)):
        assert torch.equal(t, packed[:, :, i].transpose(1, 2))


def test_bad_shapes_are_clear_errors() -> None:
    attn = MultiheadAttention(8, 2)
    with pytest.raises(ValueError, match="not divisible"):
        MultiheadAttention(8, 3)
    with pytest.raises(ValueError, match="do not match query"):
        attn(torch.randn(2, 3, 8), torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match="key_padding_mask must be a bool tensor of shape"):
        attn(torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.zeros(2, 3, dtype=torch.bool))
