# The SigLIP baseline on the synthetic-scene shards: the CLIP demo config with the sigmoid loss.
import math

from .clip_tiny_synthetic import (  # noqa: F401
    dataloader, evaluation, lr_multiplier, model, optimizer, train)

model.loss._target_ = "losses.siglip"
model.model.init_logit_scale = math.log(10)
train.output_dir = "./runs/siglip_tiny_synthetic"
