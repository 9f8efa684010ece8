"""Lazy Python configs: ``LazyCall`` nodes, ``LazyConfig`` load/save/overrides, ``instantiate``."""
from cosmos.config.instantiate import instantiate, locate
from cosmos.config.lazy import L, LazyCall, LazyConfig

__all__ = ["LazyCall", "L", "LazyConfig", "instantiate", "locate"]
