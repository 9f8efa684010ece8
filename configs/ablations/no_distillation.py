# Ablation: no distillation (CLIP loss on the crops, no teacher). Override: model.distillation=False
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

model.distillation = False
train.output_dir = "./runs/ablations/no_distillation"
