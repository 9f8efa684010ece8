"""A backbone added from outside the core: importing this package registers it."""
from .backbone import ConvStemViT  # noqa: F401
