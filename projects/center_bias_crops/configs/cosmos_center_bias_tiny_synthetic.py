# COSMOS on the synthetic scenes with this project's centre-biased multi-crop: the core
# config, imported, with the image crop policy swapped by registry name. The policy makes
# model-ready float crops itself, so the batch step of the fast multi-crop is switched off.
from cosmos.config import LazyCall as L

from ....configs.cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

imports = ["projects.center_bias_crops.center_bias_crops"]  # image_crops.center_bias_multicrop
dataloader.train.image_transform = L("image_crops.center_bias_multicrop")(
    global_size=64, local_size=24, num_global=2, num_local=6,
    global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), sigma=0.15)
dataloader.augment = None
train.output_dir = "./runs/projects/center_bias_crops"
