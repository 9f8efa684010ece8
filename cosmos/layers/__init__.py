"""Building blocks: one attention function (xformers / SDPA / math), the multi-head attention
module with packed q/k/v, transformer blocks, MLP."""
from cosmos.layers.attention import (  # noqa: F401
    attention, attention_backend, attention_varlen, available_backends, math_attention, pack,
    unpack)
from cosmos.layers.blocks import (  # noqa: F401
    MultiheadSelfAttention, ResidualAttentionBlock, Transformer)
from cosmos.layers.mlp import Mlp, QuickGELU  # noqa: F401
from cosmos.layers.multihead_attention import MultiheadAttention  # noqa: F401
