# COSMOS on the synthetic scenes with this project's conv-stem ViT as the image tower:
# the core config, imported, with the image backbone swapped by registry name. The tower takes
# the same arguments as backbones.vit, so the core's sizes (64 px, patch 8, width 96) stay.
from ....configs.cosmos.cosmos_tiny_synthetic import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

imports = ["projects.conv_stem_vit.conv_stem_vit"]  # registers backbones.conv_stem_vit
model.student.encoder.visual._target_ = "backbones.conv_stem_vit"
model.student.encoder.visual.stem_channels = 24
train.output_dir = "./runs/projects/conv_stem_vit"
