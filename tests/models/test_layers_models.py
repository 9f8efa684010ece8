"""Attention backends agree; towers have the OpenCLIP layout and behave (causality, pooling)."""
from __future__ import annotations

import pytest
import torch
from open_clip import transformer as openclip_towers

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


def _openclip_vit(vit: VisionTransformer, image_size: int) -> torch.nn.Module:
    """OpenCLIP's ViT tower at ``image_size`` holding ``vit``'s weights (strict load).

    At another size than ``vit``'s, its positional table is ``vit``'s resized by the official
    COSMOS / DINO rule written out here: bicubic, scale (g' + 0.1) / g, class position kept.
    """
    theirs = openclip_towers.VisionTransformer(
        image_size=image_size, patch_size=vit.patch_size, width=vit.width, layers=2, heads=2,
        mlp_ratio=4.0, output_dim=vit.output_dim, output_tokens=True).eval()
    weights = dict(vit.state_dict())
    grid, new_grid = vit.image_size // vit.patch_size, image_size // vit.patch_size
    if new_grid != grid:
        table = weights["positional_embedding"]
        patches = table[1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        scale = (new_grid + 0.1) / grid
        patches = torch.nn.functional.interpolate(patches, scale_factor=(scale, scale),
                                                  mode="bicubic", align_corners=False)
        weights["positional_embedding"] = torch.cat(
            [table[:1], patches.permute(0, 2, 3, 1).reshape(new_grid * new_grid, -1)])
    theirs.load_state_dict(weights, strict=True)
    return theirs


def test_vit_outputs_equal_openclip_on_the_same_weights() -> None:
    """Pooled embedding and patch tokens (after ln_post) equal OpenCLIP's ViT on the same weights,
    at the training size and on a smaller (local) crop with interpolated positions."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, width=16, layers=2, heads=2,
                            output_dim=12).eval()
    for size, num_tokens in ((32, 16), (16, 4)):
        images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            pooled, tokens = vit(images)
            ref_pooled, ref_tokens = _openclip_vit(vit, size)(images)
        assert pooled.shape == (3, 12) and tokens.shape == (3, num_tokens, 16)
        torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-5)
        torch.testing.assert_close(tokens, ref_tokens, rtol=0, atol=1e-5)
    # the strict loads above show the OpenCLIP key layout (conv1, class_embedding, ln_pre, …)


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
    tower = TextTransformer(context_length=10, vocab_size=50, width=16, layers=2, heads=2,
                            output_dim=8)
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
    # values: OpenCLIP's text tower on the same weights gives the same pooled and token features
    theirs = openclip_towers.TextTransformer(context_length=10, vocab_size=50, width=16, heads=2,
                                             layers=2, output_dim=8, output_tokens=True).eval()
    theirs.load_state_dict(tower.state_dict(), strict=True)
    with torch.no_grad():
        ref_pooled, ref_feats = theirs(tokens)
    torch.testing.assert_close(pooled, ref_pooled, rtol=0, atol=1e-5)
    torch.testing.assert_close(feats, ref_feats, rtol=0, atol=1e-5)


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
