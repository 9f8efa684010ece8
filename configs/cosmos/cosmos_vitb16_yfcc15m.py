# COSMOS ViT-B/16 on YFCC15M-recap (DreamLIP captions), 3,637 shards, 14,065,827 pairs
# (official src/train_yfcc15m.sh). 128 GPUs x 32 = global batch 4,096,
# EMA momentum 0.99, 32 epochs = 110,080 steps of 3,440 per epoch (the official loader's
# epoch length). Shards live under $COSMOS_DATA (default /datasets); override
# dataloader.train.urls to point elsewhere. Launch on the same number of GPUs to keep the
# global batch, or scale optimizer.lr with it.
from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = "${oc.env:COSMOS_DATA,/datasets}/yfcc15m_recap/{00000..03636}.tar"
dataloader.train.batch_size = 32
ema.momentum.momentum = 0.99
train.update(output_dir="./runs/cosmos_vitb16_yfcc15m", max_iter=110080,
             checkpoint_period=3440, eval_period=3440)
