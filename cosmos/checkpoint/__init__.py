from cosmos.checkpoint.checkpointer import Checkpointer, load_checkpoint  # noqa: F401
