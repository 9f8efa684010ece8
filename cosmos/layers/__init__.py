from cosmos.layers.attention import attention, attention_backend  # noqa: F401
from cosmos.layers.blocks import MultiheadSelfAttention, ResidualAttentionBlock, Transformer  # noqa: F401
from cosmos.layers.mlp import Mlp  # noqa: F401
