"""Causal text transformer in OpenCLIP's layout (token_embedding, positional_embedding, ...)."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from cosmos.layers.blocks import Transformer
from cosmos.registry import BACKBONES


@BACKBONES.register(name="text_transformer")
class TextTransformer(nn.Module):
    """Token + position embeddings → causal blocks → ln_final → EOT row @ text_projection.

    The EOT position is the argmax of the token ids (EOT has the largest id in the CLIP vocab).
    forward(tokens (B, L ≤ context_length))
        → (pooled (B, output_dim), token features (B, L, width)).
    ``causal``: positions after a text's EOT never change its pooled output, so callers may cut
    trailing padding columns.
    """

    causal = True

    def __init__(self, context_length: int = 77, vocab_size: int = 49408, width: int = 512,
                 layers: int = 12, heads: int = 8, mlp_ratio: float = 4.0, output_dim: int = 512,
                 grad_checkpointing: bool = False, quick_gelu: bool = False) -> None:
        super().__init__()
        self.context_length, self.vocab_size, self.width, self.output_dim = (
            context_length, vocab_size, width, output_dim)
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads, mlp_ratio, grad_checkpointing,
                                       quick_gelu)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, output_dim))
        self.reset_parameters(layers)

    def reset_parameters(self, layers: int) -> None:
        """OpenCLIP's text-tower initialisation."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        attn_std = self.width ** -0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * self.width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=attn_std)

    def fsdp_units(self) -> List[nn.Module]:
        """Submodules FSDP shards separately: the transformer blocks, in order."""
        return list(self.transformer.resblocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        length = tokens.shape[1]
        if length > self.context_length:
            raise ValueError(
                f"text of {length} tokens exceeds context length {self.context_length}")
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.ln_final(self.transformer(x, is_causal=True))
        eot = tokens.argmax(dim=-1)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
        return pooled, x
