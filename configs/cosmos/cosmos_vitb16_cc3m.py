# COSMOS ViT-B/16 on CC3M-recap (DreamLIP captions), 576 shards, 2,823,019 pairs
# (official src/train_cc3m.sh). 16 GPUs x 64 = global batch 1,024,
# EMA momentum 0.999, 32 epochs = 88,576 steps of 2,768 per epoch (the official loader's
# epoch length). Shards live under $COSMOS_DATA (default /datasets); override
# dataloader.train.urls to point elsewhere. Launch on the same number of GPUs to keep the
# global batch, or scale optimizer.lr with it.
from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = "${oc.env:COSMOS_DATA,/datasets}/cc3m_recap/{00000..00575}.tar"
dataloader.train.batch_size = 64
ema.momentum.momentum = 0.999
train.update(output_dir="./runs/cosmos_vitb16_cc3m", max_iter=88576,
             checkpoint_period=2768, eval_period=2768)
