# Ablation: cosine EMA momentum from 0.99 to 1 instead of a constant.
# Override (one argument):
#   ema.momentum={_target_: ema_schedulers.cosine, total_steps: ${train.max_iter},
#   base_momentum: 0.99}
from ..cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

ema.momentum = {
    "_target_": "ema_schedulers.cosine", "total_steps": "${train.max_iter}", "base_momentum": 0.99}
train.output_dir = "./runs/ablations/cosine_momentum"
