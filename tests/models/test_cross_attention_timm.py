"""Cross-attention pooler (parity with nn.MultiheadAttention, official keys, counts); timm tower."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cosmos.models.cross_attention import (AttentionalCrossPooler, CrossAttention, TokenMapping,
                                           cross_modal_embedding)
from cosmos.models.timm_tower import TimmImageTower
from cosmos.registry import BACKBONES, HEADS
from cosmos.utils.errors import CosmosError

D, HEADS_N, LK = 32, 4, 7
OFFICIAL_KEYS = {"attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                 "attn.out_proj.bias", "ln_q.weight", "ln_q.bias", "ln_k.weight", "ln_k.bias"}


@pytest.fixture(params=["sdpa", "math"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", request.param)
    return request.param


def _padding_mask(b: int = 2) -> torch.Tensor:
    mask = torch.zeros(b, LK, dtype=torch.bool)
    mask[0, 4:] = True  # row 0 keeps 4 keys; row 1 keeps all
    return mask


def _mha_pair() -> tuple[CrossAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = CrossAttention(D, HEADS_N)
    nn.init.normal_(ours.in_proj_bias, std=0.1)
    nn.init.normal_(ours.out_proj.bias, std=0.1)
    ref = nn.MultiheadAttention(D, HEADS_N, batch_first=True)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("lq", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_attention_matches_torch_mha(backend: str, lq: int, masked: bool) -> None:
    ours, ref = _mha_pair()
    q, kv = torch.randn(2, lq, D), torch.randn(2, LK, D)
    mask = _padding_mask() if masked else None
    expected, _ = ref(q, kv, kv, key_padding_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(q, kv, mask), expected, atol=1e-5, rtol=1e-5)


def test_padded_keys_are_ignored(backend: str) -> None:
    ours, _ = _mha_pair()
    q, kv = torch.randn(2, 3, D), torch.randn(2, LK, D)
    mask = _padding_mask()
    out = ours(q, kv, mask)
    garbage = kv.clone()
    garbage[0, 4:] = 1e3 * torch.randn(LK - 4, D)
    torch.testing.assert_close(ours(q, garbage, mask), out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:1], ours(q[:1], kv[:1, :4]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], ours(q[1:], kv[1:]), atol=1e-5, rtol=1e-5)


def test_bad_mask_is_rejected() -> None:
    ours, _ = _mha_pair()
    q, kv = torch.randn(2, 1, D), torch.randn(2, LK, D)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(q, kv, torch.zeros(2, LK))


@pytest.mark.parametrize("lq", [None, 1, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_pooler_is_layernorm_then_mha(backend: str, lq: int | None, masked: bool) -> None:
    torch.manual_seed(1)
    pooler = AttentionalCrossPooler(D, HEADS_N)
    for ln in (pooler.ln_q, pooler.ln_k):
        nn.init.normal_(ln.weight, 1.0, 0.1)
        nn.init.normal_(ln.bias, 0.0, 0.1)
    ref = nn.MultiheadAttention(D, HEADS_N, batch_first=True)
    ref.load_state_dict(pooler.attn.state_dict())
    q = torch.randn(2, D) if lq is None else torch.randn(2, lq, D)
    tokens = torch.randn(2, LK, D)
    mask = _padding_mask() if masked else None
    out = pooler(q, tokens, mask)
    assert out.shape == q.shape
    q3 = q.unsqueeze(1) if lq is None else q
    kv = pooler.ln_k(tokens)
    expected, _ = ref(pooler.ln_q(q3), kv, kv, key_padding_mask=mask, need_weights=False)
    expected = expected.squeeze(1) if lq is None else expected
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_cross_modal_embedding_is_normalised_residual() -> None:
    torch.manual_seed(2)
    pooler = AttentionalCrossPooler(D, HEADS_N)
    q, tokens = 3.0 * torch.randn(4, D), torch.randn(4, LK, D)
    emb = cross_modal_embedding(pooler, q, tokens)
    assert emb.shape == (4, D)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(emb, F.normalize(q + pooler(q, tokens), dim=-1))


def test_official_keys_and_parameter_counts() -> None:
    pooler = AttentionalCrossPooler()
    assert set(pooler.state_dict()) == OFFICIAL_KEYS
    assert sum(p.numel() for p in pooler.parameters()) == 1_052_672
    assert pooler.attn.in_proj_weight.shape == (1536, 512)
    image_map, text_map = TokenMapping(768, 512), TokenMapping(512, 512)
    assert set(image_map.state_dict()) == {"weight", "bias"}
    assert sum(p.numel() for p in image_map.parameters()) == 393_728
    assert sum(p.numel() for p in text_map.parameters()) == 262_656
    assert image_map(torch.randn(2, 5, 768)).shape == (2, 5, 512)
    assert HEADS.get("cross_attention_pooler") is AttentionalCrossPooler
    assert HEADS.get("token_mapping") is TokenMapping


def test_gradients_reach_inputs_and_parameters() -> None:
    torch.manual_seed(3)
    pooler = AttentionalCrossPooler(D, HEADS_N)
    q = torch.randn(2, D, requires_grad=True)
    tokens = torch.randn(2, LK, D, requires_grad=True)
    cross_modal_embedding(pooler, q, tokens, _padding_mask()).pow(3).sum().backward()
    for name, tensor in [("query", q), ("tokens", tokens), *pooler.named_parameters()]:
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name
    assert tokens.grad[0, 4:].abs().sum() == 0  # padded tokens get no gradient


# ---------------------------------------------------------------------------------------------
# timm tower


@pytest.fixture(scope="module")
def tiny_tower() -> TimmImageTower:
    torch.manual_seed(0)
    return TimmImageTower("vit_tiny_patch16_224", image_size=224, output_dim=64).eval()


@pytest.mark.parametrize("size,tokens", [(224, 196), (96, 36)])
def test_timm_tower_shapes(tiny_tower: TimmImageTower, size: int, tokens: int) -> None:
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        pooled, patches = tiny_tower(images)
        features = tiny_tower.trunk.forward_features(images)
    assert tiny_tower.width == 192 and tiny_tower.output_dim == 64
    assert pooled.shape == (2, 64) and patches.shape == (2, tokens, 192)
    torch.testing.assert_close(patches, features[:, 1:])  # CLS dropped, after the final norm
    torch.testing.assert_close(pooled, features[:, 0] @ tiny_tower.proj)


def test_timm_tower_registry_and_checkpointing(tiny_tower: TimmImageTower) -> None:
    assert BACKBONES.get("timm_vit") is TimmImageTower
    tiny_tower.set_grad_checkpointing(True)
    tiny_tower.set_grad_checkpointing(False)


def test_timm_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(CosmosError, match="vit_does_not_exist"):
        TimmImageTower("vit_does_not_exist")
