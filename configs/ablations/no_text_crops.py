# Ablation: no text crops (every text crop is the full caption).
# Override:
#   dataloader.train.text_transform={_target_: text_crops.full_caption_repeated, num_captions: 8}
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.text_transform = {
    "_target_": "text_crops.full_caption_repeated", "num_captions": 8}
train.output_dir = "./runs/ablations/no_text_crops"
