"""Attention backends agree; towers have the OpenCLIP layout and behave (causality, pooling)."""
from __future__ import annotations

import math

import pytest
import torch

from cosmos.layers.attention import attention, math_attention
from cosmos.models import TextTransformer, VisionTransformer, interpolate_pos_embed


@pytest.fixture
def qkv():
    torch.manual_seed(0)
    return torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)


def test_sdpa_matches_math_with_padding_mask(qkv, monkeypatch) -> None:
    q, k, v = qkv
    pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "sdpa")
    sdpa = attention(q, k, v, key_padding_mask=pad)
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "math")
    ref = attention(q, k, v, key_padding_mask=pad)
    assert torch.allclose(sdpa, ref, atol=1e-5)
    # padding keys really are ignored: dropping them gives the same result for sample 1
    short = math_attention(q[1:], k[1:, :, :4], v[1:, :, :4])
    assert torch.allclose(ref[1:], short, atol=1e-6)


def test_causal_matches_explicit_mask(qkv, monkeypatch) -> None:
    q, _, _ = qkv
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "sdpa")
    causal = attention(q, q, q, is_causal=True)
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    assert torch.allclose(causal, math_attention(q, q, q, mask=mask), atol=1e-5)


def test_unknown_backend_is_rejected(qkv, monkeypatch) -> None:
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "flashy")
    with pytest.raises(ValueError, match="COSMOS_ATTN_BACKEND"):
        attention(*qkv)


def test_vit_shapes_and_openclip_keys() -> None:
    vit = VisionTransformer(image_size=32, patch_size=8, width=16, layers=2, heads=2, output_dim=12)
    pooled, tokens = vit(torch.randn(3, 3, 32, 32))
    assert pooled.shape == (3, 12) and tokens.shape == (3, 16, 16)
    pooled, tokens = vit(torch.randn(3, 3, 16, 16))  # a smaller (local) crop
    assert pooled.shape == (3, 12) and tokens.shape == (3, 4, 16)
    keys = set(vit.state_dict())
    for key in ("conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "proj",
                "transformer.resblocks.0.attn.in_proj_weight", "transformer.resblocks.0.attn.out_proj.bias",
                "transformer.resblocks.1.mlp.c_fc.weight", "transformer.resblocks.1.ln_2.bias",
                "ln_post.weight"):
        assert key in keys, key


def test_pos_embed_interpolation_rule() -> None:
    table = torch.randn(1 + 14 * 14, 4)
    assert interpolate_pos_embed(table, 14, 14) is table
    small = interpolate_pos_embed(table, 6, 6)
    assert small.shape == (1 + 36, 4) and torch.equal(small[0], table[0])
    grid = table[1:].reshape(1, 14, 14, 4).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, scale_factor=(6.1 / 14, 6.1 / 14), mode="bicubic",
                                          align_corners=False)
    assert torch.allclose(small[1:], ref.permute(0, 2, 3, 1).reshape(-1, 4))


def test_text_tower_causal_and_eot_pooling() -> None:
    torch.manual_seed(0)
    tower = TextTransformer(context_length=10, vocab_size=50, width=16, layers=2, heads=2, output_dim=8)
    tokens = torch.tensor([[48, 3, 4, 49, 0, 0, 0, 0, 0, 0], [48, 5, 49, 0, 0, 0, 0, 0, 0, 0]])
    pooled, feats = tower(tokens)
    assert pooled.shape == (2, 8) and feats.shape == (2, 10, 16)
    # causal: changing a later token leaves earlier positions (and the EOT pooling) unchanged
    changed = tokens.clone()
    changed[0, 5] = 7
    pooled2, feats2 = tower(changed)
    assert torch.allclose(feats[0, :5], feats2[0, :5], atol=1e-6)
    assert torch.allclose(pooled, pooled2, atol=1e-6)
    # trimming trailing padding does not change the pooled embedding
    trimmed, _ = tower(tokens[:, :4])
    assert torch.allclose(trimmed, pooled, atol=1e-6)
    assert tower.text_projection.std().item() == pytest.approx(16 ** -0.5, rel=0.3)


def test_grad_checkpointing_same_gradients() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=8, width=16, layers=2, heads=2, output_dim=4)
    x = torch.randn(2, 3, 16, 16)
    vit(x)[0].sum().backward()
    ref = [p.grad.clone() for p in vit.parameters()]
    vit.zero_grad()
    vit.set_grad_checkpointing(True)
    vit(x)[0].sum().backward()
    for a, p in zip(ref, vit.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)
