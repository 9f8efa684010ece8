# CPU twin of ../cosmos_own_data.py (docs/own_data.md): the same recipe, caption pools and
# held-out retrieval with a tiny model and 64/24 px crops, to try a folder of your data in
# minutes before the real run.
from ..cosmos_own_data import (  # noqa: F401
    dataloader, ema, evaluation, lr_multiplier, model, optimizer, train)
from ...common.tiny_twin import TINY_TEXT, TINY_TRAIN, TINY_VISUAL, TINY_VIEWS, TINY_WARMUP

model.student.encoder.visual.update(TINY_VISUAL)
model.student.encoder.text.update(TINY_TEXT)
model.student.image_cross_pooler.heads = 4
model.student.text_cross_pooler.heads = 4
dataloader.train.update(urls="${oc.env:OWN_DATA,my_data}/shards/train-{000000..000000}.tar",
                        batch_size=8, num_workers=1)
dataloader.train.image_transform.update(TINY_VIEWS)
evaluation.holdout.transform.size = 64
evaluation.holdout.batch_size = 16
ema.momentum.momentum = 0.99
train.update(TINY_TRAIN, output_dir="./runs/tiny/cosmos_own_data")
lr_multiplier.warmup_steps = TINY_WARMUP
