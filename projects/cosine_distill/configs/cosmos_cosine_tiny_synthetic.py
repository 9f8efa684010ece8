# COSMOS on the synthetic scenes with this project's cosine-regression distillation loss:
# the core config, imported, with the distillation loss swapped by registry name.
from ....configs.cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

imports = ["projects.cosine_distill.cosine_distill"]  # registers losses.cosine_distill
model.distill_loss._target_ = "losses.cosine_distill"
train.output_dir = "./runs/projects/cosine_distill"
