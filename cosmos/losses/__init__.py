"""Training objectives. Importing this package registers the built-in losses."""
from cosmos.losses.contrastive import ClipInfoNCE, infonce, list_infonce  # noqa: F401
from cosmos.losses.cosmos_distill import CosmosDistillLoss  # noqa: F401
from cosmos.losses.sigmoid import SigLIPLoss, sigmoid_loss  # noqa: F401
