# Cause analysis for the synthetic scenes: COSMOS text crops drawn only from the long caption's
# sentences (no raw tag list, no short summary), so each global caption is 1–5 of the five
# sentences the evaluation's whole caption is made of.
# Override: dataloader.train.text_transform.pools=[long]
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.text_transform.pools = ["long"]
train.output_dir = "./runs/ablations/long_caption_crops"
