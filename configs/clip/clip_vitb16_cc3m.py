# CLIP ViT-B/16 baseline on CC3M-recap with the COSMOS recipe and schedule (16 GPUs x 64,
# 88,576 steps), for comparisons on equal data: configs/cosmos/cosmos_vitb16_cc3m.py.
from ..common.recipes.clip_paper import (  # noqa: F401
    dataloader, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.urls = "${oc.env:COSMOS_DATA,/datasets}/cc3m_recap/{00000..00575}.tar"
dataloader.train.batch_size = 64
train.update(output_dir="./runs/clip_vitb16_cc3m", max_iter=88576, checkpoint_period=2768,
             eval_period=2768)
