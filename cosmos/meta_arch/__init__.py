"""Meta-architectures. Importing this package registers them."""
from cosmos.meta_arch.clip import CLIP  # noqa: F401
from cosmos.meta_arch.cosmos import COSMOS  # noqa: F401
