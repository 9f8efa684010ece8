# Ablation: no cross-attention (the student's own embeddings are distilled).
# Override: model.cross_attention=False
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

model.cross_attention = False
train.output_dir = "./runs/ablations/no_cross_attention"
