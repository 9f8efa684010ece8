# COSMOS ViT-B/16 on Merged-30M = YFCC15M + CC12M + CC3M recaptioned, 26,899,071 pairs
# (official src/train_merged30m.sh). 128 GPUs x 32 = global batch 4,096,
# EMA momentum 0.99, 32 epochs = 210,432 steps of 6,576 per epoch (the official loader's
# epoch length). Shards live under $COSMOS_DATA (default /datasets); override
# dataloader.train.urls to point elsewhere. Launch on the same number of GPUs to keep the
# global batch, or scale optimizer.lr with it.
from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = ("${oc.env:COSMOS_DATA,/datasets}/yfcc15m_recap/{00000..03636}.tar::"
                         "${oc.env:COSMOS_DATA,/datasets}/cc12m_recap/{00000..02175}.tar::"
                         "${oc.env:COSMOS_DATA,/datasets}/cc3m_recap/{00000..00575}.tar")
dataloader.train.batch_size = 32
ema.momentum.momentum = 0.99
train.update(output_dir="./runs/cosmos_vitb16_merged30m", max_iter=210432,
             checkpoint_period=6576, eval_period=6576)
