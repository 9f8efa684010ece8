# COSMOS ViT-B/16 on your own images and captions (docs/own_data.md walks through it): shards
# written by `tools/make_shards.py folder` into $OWN_DATA/shards, held-out retrieval pairs in
# $OWN_DATA/holdout.json (a list of {"image": path under $OWN_DATA/images, "caption": [...]})
# evaluated during and after training. The recipe is the paper's (configs/common/recipes/
# cosmos_paper.py); set the shard range, the batch and the schedule for your data and GPUs.
from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer

from ..common.recipes.cosmos_paper import (  # noqa: F401
    dataloader, ema, lr_multiplier, model, optimizer, train)

OWN_DATA = "${oc.env:OWN_DATA,my_data}"

dataloader.train.urls = OWN_DATA + "/shards/train-{000000..000009}.tar"
# Caption fields: the CSV's caption column is stored as raw_caption; extra columns keep their
# names. The text crops draw sentences from these pools in order (a pool is a POOL_KEYS name or
# a field name); `dataloader.train.caption_keys=[...]` would restrict the fields read at all.
dataloader.train.text_transform.pools = ("raw", "long_caption")
dataloader.train.batch_size = 64
ema.momentum.momentum = 0.999

evaluation = dict(
    holdout=L("evaluators.retrieval")(
        root=OWN_DATA, annotation="holdout.json", layout="flickr_official", image_dir="images",
        transform=L("image_crops.clip_eval")(size=224),
        tokenizer=L(ClipTokenizer)(context_length=77)),
)
train.update(output_dir="./runs/cosmos_own_data", max_iter=20000, checkpoint_period=1000,
             eval_period=1000)
