"""Towers and model builders. Importing this package registers the built-in backbones."""
from cosmos.models.dual_encoder import DualEncoder  # noqa: F401
from cosmos.models.text import TextTransformer  # noqa: F401
from cosmos.models.vit import VisionTransformer, interpolate_pos_embed  # noqa: F401
