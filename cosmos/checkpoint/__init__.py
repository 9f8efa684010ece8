from cosmos.checkpoint.checkpointer import Checkpointer, load_checkpoint  # noqa: F401
from cosmos.checkpoint.metadata import check_metadata, model_metadata  # noqa: F401
