# Ablation: no local image crops (global crops only).
# Override: dataloader.train.image_transform.num_local=0
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.image_transform.num_local = 0
train.output_dir = "./runs/ablations/no_local_crops"
