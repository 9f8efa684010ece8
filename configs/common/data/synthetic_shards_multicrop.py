from cosmos.config import LazyCall as L

from .synthetic_shards import dataloader, evaluation  # noqa: F401

# COSMOS views of the synthetic shards: 2 global + 6 local image crops (224/96 px scaled down to
# 64/24 px; 96/224 of 64 is 27) and 8 text crops (2 global of 1–5 sentences, 6 single sentences).
# Geometry in the loader workers, photometric ops batched on the training device (see
# webdataset.py); "image_crops.cosmos_multicrop" with `dataloader.augment=null` is the
# per-sample path.
dataloader.train.image_transform = L("image_crops.cosmos_multicrop_fast")(
    global_size=64, local_size=24, num_global=2, num_local=6,
    global_scale=(0.4, 1.0), local_scale=(0.05, 0.4))
dataloader["augment"] = L("batch_augments.dino_photometric")()
dataloader.train.text_transform = L("text_crops.cosmos_textcrop")(
    num_captions=8, num_global=2, max_global_sentences=5)
