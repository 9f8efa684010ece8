# COSMOS ViT-B/16 on CC12M-recap (DreamLIP captions), 2,176 shards, 10,010,225 pairs
# (official src/train_cc12m.sh). 128 GPUs x 32 = global batch 4,096,
# EMA momentum 0.99, 32 epochs = 78,336 steps of 2,448 per epoch (the official loader's
# epoch length). Shards live under $COSMOS_DATA (default /datasets); override
# dataloader.train.urls to point elsewhere. Launch on the same number of GPUs to keep the
# global batch, or scale optimizer.lr with it.
from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = "${oc.env:COSMOS_DATA,/datasets}/cc12m_recap/{00000..02175}.tar"
dataloader.train.batch_size = 32
ema.momentum.momentum = 0.99
train.update(output_dir="./runs/cosmos_vitb16_cc12m", max_iter=78336,
             checkpoint_period=2448, eval_period=2448)
