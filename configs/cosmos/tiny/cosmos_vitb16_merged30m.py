# CPU twin of ../cosmos_vitb16_merged30m.py: the same recipe and data pipeline with a tiny
# model, 64/24 px crops and the synthetic-scene shards (`make shards`). CI runs it.
from ..cosmos_vitb16_merged30m import (  # noqa: F401
    dataloader, ema, lr_multiplier, model, optimizer, train)
from ...common.data.synthetic import evaluation  # noqa: F401
from ...common.tiny_twin import (TINY_DATA, TINY_MERGED_URLS, TINY_TEXT, TINY_TRAIN, TINY_VISUAL,
                                 TINY_VIEWS, TINY_WARMUP)

model.student.encoder.visual.update(TINY_VISUAL)
model.student.encoder.text.update(TINY_TEXT)
model.student.image_cross_pooler.heads = 4
model.student.text_cross_pooler.heads = 4
dataloader.train.update(TINY_DATA)
dataloader.train.image_transform.update(TINY_VIEWS)
dataloader.train.urls = TINY_MERGED_URLS
lr_multiplier.warmup_steps = TINY_WARMUP
train.update(TINY_TRAIN, output_dir="./runs/tiny/cosmos_vitb16_merged30m")
