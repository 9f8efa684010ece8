# Ablation: SigLIP's sigmoid loss instead of InfoNCE for the CLIP term.
# Override: model.clip_loss._target_=losses.siglip
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

model.clip_loss._target_ = "losses.siglip"
train.output_dir = "./runs/ablations/siglip"
