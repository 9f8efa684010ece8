# CLIP ViT-B/16 (OpenCLIP shapes) on the synthetic scenes at 224 px: the GPU-sized baseline.
from ..common.data.synthetic import dataloader, evaluation
from ..common.models.clip import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import lr_multiplier
from ..common.train import train

for node in (dataloader.train.dataset, evaluation.synthetic.dataset):
    node.image_size = 224
dataloader.train.image_transform.size = 224
evaluation.synthetic.transform.size = 224
dataloader.train.batch_size = 256
dataloader.train.num_workers = 8

optimizer.params.weight_decay = 0.2
lr_multiplier.warmup_steps = 500
train.update(output_dir="./runs/clip_vitb16_synthetic", max_iter=10000, checkpoint_period=1000,
             eval_period=2000)
