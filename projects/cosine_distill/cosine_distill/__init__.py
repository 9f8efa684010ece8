"""A distillation loss added from outside the core: importing this package registers it."""
from .loss import CosineDistillLoss  # noqa: F401
