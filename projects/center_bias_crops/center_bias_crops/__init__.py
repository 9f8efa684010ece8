"""An image crop policy added from outside the core: importing this package registers it."""
from .policy import CenterBiasMultiCrop  # noqa: F401
