# SigLIP ViT-B/16 baseline on CC3M-recap: the CLIP baseline with the sigmoid loss (its own
# learnable bias, initialised at -10) and logit scale initialised at log(10), as in SigLIP.
import math

from .clip_vitb16_cc3m import (  # noqa: F401
    dataloader, evaluation, lr_multiplier, model, optimizer, train)

model.loss._target_ = "losses.siglip"
model.model.init_logit_scale = math.log(10)
train.output_dir = "./runs/siglip_vitb16_cc3m"
