# A small COSMOS on the synthetic scenes (CPU-sized twin of the paper configs).
from ..common.data.synthetic_multicrop import dataloader, evaluation
from ..common.models.cosmos import ema, model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

model.student.encoder.visual.update(image_size=64, patch_size=8, width=128, layers=4, heads=4,
                                    output_dim=128)
model.student.encoder.text.update(width=128, layers=4, heads=2, output_dim=128)
model.student.image_cross_pooler.heads = 4
model.student.text_cross_pooler.heads = 4
dataloader.train.batch_size = 32

optimizer.lr = 1e-3
optimizer.params.weight_decay = 0.1
lr_multiplier.warmup_steps = 50
ema.momentum.momentum = 0.99

train.update(output_dir="./runs/cosmos_tiny_synthetic", max_iter=400, checkpoint_period=100,
             eval_period=200, log_period=20)
