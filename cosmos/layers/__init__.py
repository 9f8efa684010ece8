"""Building blocks: one attention function (xformers / SDPA / math), transformer blocks, MLP."""
from cosmos.layers.attention import (  # noqa: F401
    attention, attention_backend, attention_varlen, available_backends, math_attention, pack, unpack)
from cosmos.layers.blocks import MultiheadSelfAttention, ResidualAttentionBlock, Transformer  # noqa: F401
from cosmos.layers.mlp import Mlp, QuickGELU  # noqa: F401
