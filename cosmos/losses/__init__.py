"""Training objectives. Importing this package registers the built-in losses."""
from cosmos.losses.contrastive import (  # noqa: F401
    GATHER_MODES, ClipInfoNCE, clip_list_loss, infonce, list_infonce)
from cosmos.losses.cosmos_distill import CosmosDistillLoss  # noqa: F401
from cosmos.losses.sigmoid import SigLIPLoss, sigmoid_loss  # noqa: F401
