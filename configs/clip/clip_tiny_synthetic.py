# The demo: a small CLIP trained on CPU on the built-in synthetic scenes (`make demo`).
from ..common.data.synthetic import dataloader, evaluation
from ..common.models.clip import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

model.model.visual.update(image_size=64, patch_size=8, width=128, layers=4, heads=4, output_dim=128)
model.model.text.update(width=128, layers=4, heads=2, output_dim=128)

optimizer.lr = 1e-3
optimizer.params.weight_decay = 0.1
lr_multiplier.warmup_steps = 50

train.update(output_dir="./runs/clip_tiny_synthetic", max_iter=400, checkpoint_period=100,
             eval_period=200, log_period=20)
