# COSMOS ViT-B/32 on the cc12m recipe of cosmos_vitb16_cc12m.py (the official B/32 checkpoints
# were trained with the same scripts and --model ViT-B-32; official
# src/open_clip/model_configs/ViT-B-32.json).
from .cosmos_vitb16_cc12m import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

model.student.encoder.visual.patch_size = 32
train.output_dir = "./runs/cosmos_vitb32_cc12m"
