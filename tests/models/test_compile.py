"""Tower blocks trace under torch.compile without graph breaks (fullgraph=True must succeed)."""
from __future__ import annotations

import pytest
import torch

from cosmos.layers.blocks import ResidualAttentionBlock
from cosmos.models import TextTransformer, VisionTransformer

pytestmark = pytest.mark.slow  # torch.compile traces take seconds each


def _fullgraph(module: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
    torch._dynamo.reset()
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    return compiled(*args, **kwargs)


def test_block_compiles_without_graph_breaks() -> None:
    torch.manual_seed(0)
    block = ResidualAttentionBlock(32, 4)
    x = torch.randn(2, 9, 32)
    assert torch.allclose(_fullgraph(block, x), block(x), atol=1e-6)
    assert torch.allclose(_fullgraph(block, x, is_causal=True), block(x, is_causal=True), atol=1e-6)


def test_towers_compile_without_graph_breaks() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, width=32, layers=2, heads=4, output_dim=8)
    images = torch.randn(2, 3, 32, 32)
    assert torch.allclose(_fullgraph(vit, images)[0], vit(images)[0], atol=1e-5)
    text = TextTransformer(context_length=16, vocab_size=100, width=32, layers=2, heads=4,
                           output_dim=8)
    tokens = torch.randint(1, 98, (2, 16))
    tokens[:, -1] = 99
    assert torch.allclose(_fullgraph(text, tokens)[0], text(tokens)[0], atol=1e-5)
