from cosmos.config import LazyCall as L

from ..data.webdataset import dataloader
from ..models.clip import model  # noqa: F401
from ..optim import AdamW as optimizer
from ..schedule import lr_multiplier
from ..train import train

# The CLIP baseline trained the COSMOS way (the recipe of cosmos_paper.py without the crops,
# teacher and distillation): one 224 px view (OpenCLIP's RandomResizedCrop scale (0.9, 1)) and one
# caption of 1–5 sentences drawn from the same pools as a COSMOS global caption.
dataloader.train.image_transform = L("image_crops.clip_single")(size=224, scale=(0.9, 1.0))
dataloader.train.text_transform = L("text_crops.sampled_caption")(
    max_global_sentences=5, pools=("raw", "short", "long"))
dataloader.augment = None  # no multi-crop: nothing to do on the device
optimizer.lr = 5e-4
optimizer.betas = (0.9, 0.98)
optimizer.eps = 1e-8
optimizer.params.weight_decay = 0.5
lr_multiplier.warmup_steps = 2000
train.update(amp=dict(enabled=True, dtype="fp16"), grad_clip=None, seed=0, log_period=50,
             max_to_keep=2)
evaluation = {}
