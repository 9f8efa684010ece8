# COSMOS ViT-B/16 on PixelProse, 1,700 shards, 15,037,386 pairs
# (official src/train_pixelprose.sh). 128 GPUs x 32 = global batch 4,096,
# EMA momentum 0.99, 32 epochs = 117,760 steps of 3,680 per epoch (the official loader's
# epoch length). Shards live under $COSMOS_DATA (default /datasets); override
# dataloader.train.urls to point elsewhere. Launch on the same number of GPUs to keep the
# global batch, or scale optimizer.lr with it.
from cosmos.config import LazyCall as L

from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = "${oc.env:COSMOS_DATA,/datasets}/pixelprose/{00000..01699}.tar"
# PixelProse captions are split at load time: S = [original caption] + sentences.
dataloader.train.text_transform = L("text_crops.pixelprose_textcrop")(
    caption_key="caption", original_key="original_caption", num_captions=8,
    num_global=2, max_global_sentences=5)
dataloader.train.batch_size = 32
ema.momentum.momentum = 0.99
train.update(output_dir="./runs/cosmos_vitb16_pixelprose", max_iter=117760,
             checkpoint_period=3680, eval_period=3680)
