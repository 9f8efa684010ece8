"""Training objectives. Importing this package registers the built-in losses."""
from cosmos.losses.contrastive import ClipInfoNCE, infonce  # noqa: F401
