"""Towers and model builders. Importing this package registers the built-in backbones."""
from cosmos.models.dual_encoder import DualEncoder  # noqa: F401
from cosmos.models.text import TextTransformer  # noqa: F401
from cosmos.models.vit import VisionTransformer, interpolate_pos_embed  # noqa: F401
from cosmos.models.presets import build_dual_encoder, build_tower, preset  # noqa: F401
from cosmos.models.convert import from_openclip, read_state_dict, to_openclip  # noqa: F401
from cosmos.models.cross_attention import (  # noqa: F401
    AttentionalCrossPooler, CrossAttention, TokenMapping, cross_modal_embedding)
from cosmos.models.timm_tower import TimmImageTower  # noqa: F401
from cosmos.models.cosmos_student import CosmosStudent  # noqa: F401
from cosmos.models.convert_cosmos import (  # noqa: F401
    build_cosmos_student, export_openclip, from_official_cosmos, to_official_cosmos)
