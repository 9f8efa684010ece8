# The demo: a small COSMOS trained on CPU on the synthetic-scene shards (`make demo`, with the
# CLIP baseline configs/clip/clip_tiny_synthetic.py beside it; `make shards` writes the shards).
# The recipe-faithful tiny twins of the paper configs are in configs/cosmos/tiny/.
# It keeps the paper's text-crop pools (raw + short + long sentences). On these scenes the recipe
# that suits the scale draws text crops from the long caption only (one override,
# configs/ablations/long_caption_crops.py): +3.1 points on the hard-negative mean and twice the
# whole-caption R@1 over 3 seeds (docs/experiments.md).
from ..common.data.synthetic_shards_multicrop import dataloader, evaluation
from ..common.models.cosmos import ema, model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

model.student.encoder.visual.update(image_size=64, patch_size=8, width=96, layers=4, heads=4,
                                    output_dim=96)
model.student.encoder.text.update(width=96, layers=4, heads=2, output_dim=96)
model.student.image_cross_pooler.heads = 4
model.student.text_cross_pooler.heads = 4
# Caption padding is masked out of cross-attention (the official code keeps padded positions as
# keys), so caption 1 is trimmed too (3x faster on CPU); `model.mask_text_padding=False` is the
# official behaviour (trimming stays exact there: caption 1 keeps its full context).
model.mask_text_padding = True
model.trim_text_padding = True
dataloader.train.batch_size = 32

optimizer.lr = 1e-3
optimizer.params.weight_decay = 0.1
lr_multiplier.warmup_steps = 50
ema.momentum.momentum = 0.99

train.update(output_dir="./runs/cosmos_tiny_synthetic", max_iter=200, checkpoint_period=50,
             eval_period=0, log_period=10)
