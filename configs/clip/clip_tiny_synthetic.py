# The demo's baseline: a small CLIP trained on CPU on the synthetic-scene shards (`make demo`
# trains it beside COSMOS with the same steps and batch; `make shards` writes the shards).
# It trains on the whole long caption, the text its evaluators show it; the paper-scale CLIP
# configs (and configs/ablations/clip_sampled_captions.py) sample 1-5 sentences per step like a
# COSMOS global caption, which costs most of the whole-caption R@1 (docs/experiments.md).
from ..common.data.synthetic_shards import dataloader, evaluation
from ..common.models.clip import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

model.model.visual.update(image_size=64, patch_size=8, width=96, layers=4, heads=4, output_dim=96)
model.model.text.update(width=96, layers=4, heads=2, output_dim=96)

optimizer.lr = 1e-3
optimizer.params.weight_decay = 0.1
lr_multiplier.warmup_steps = 50

dataloader.train.batch_size = 32

train.update(output_dir="./runs/clip_tiny_synthetic", max_iter=200, checkpoint_period=50,
             eval_period=0, log_period=10)
