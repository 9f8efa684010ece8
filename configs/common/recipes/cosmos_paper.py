from ..data.webdataset import dataloader  # noqa: F401
from ..models.cosmos import ema, model  # noqa: F401
from ..optim import AdamW as optimizer
from ..schedule import lr_multiplier
from ..train import train

# The official COSMOS recipe (official src/train_*.sh), ViT-B/16: AdamW lr 5e-4, betas
# (0.9, 0.98), eps 1e-8, weight decay 0.5 (not on norms, biases, class embedding, logit scales),
# 2,000 warmup steps then cosine to 0, 32 epochs, fp16 autocast with a GradScaler, no gradient
# clipping, seed 0, constant EMA momentum (set per dataset). Dataset configs set the shards, the
# per-GPU batch, the momentum and the step counts. `train.amp.dtype=bf16` is the one override
# for bf16 on GPUs that have it.
optimizer.lr = 5e-4
optimizer.betas = (0.9, 0.98)
optimizer.eps = 1e-8
optimizer.params.weight_decay = 0.5
lr_multiplier.warmup_steps = 2000
train.update(amp=dict(enabled=True, dtype="fp16"), grad_clip=None, seed=0, log_period=50,
             max_to_keep=2)
evaluation = {}  # zero-shot benchmarks are added with `+evaluation.<name>=...` or by a leaf config
