from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer, ShardStream

# Paper-scale COSMOS data (arXiv 2412.01814; official src/training/data.py): recaptioned
# webdataset shards with the captions pre-split into sentences (raw, short and long pools),
# 2 global 224 px + 6 local 96 px image crops, 8 text crops, per-GPU batch 64 (CC3M) or 32 (the
# larger sets), 16 loader workers per GPU.
# `urls` is set by the dataset config; COSMOS_DATA (env) is the root of the shard folders.
dataloader = dict(
    train=L(ShardStream)(
        urls="???",
        # the workers decode and draw every random parameter; crop, bicubic resize, flip and
        # the photometric half run batched on the training device (`augment` below), with the
        # same draws as "image_crops.cosmos_multicrop", the per-sample path (to use it, set the
        # whole node, `dataloader.train.image_transform={_target_: image_crops.cosmos_multicrop}`,
        # and `dataloader.augment=null`). Same pixels as PIL either way; resize_on_device=False
        # does the geometry on uint8 in the workers instead (2.2x fewer samples/s per core at
        # 512 px, docs/benchmarks.md). Images larger than `canvas` are shrunk to fit.
        image_transform=L("image_crops.cosmos_multicrop_fast")(
            global_size=224, local_size=96, num_global=2, num_local=6,
            global_scale=(0.4, 1.0), local_scale=(0.05, 0.4),
            resize_on_device=True, canvas=(768, 768)),
        text_transform=L("text_crops.cosmos_textcrop")(
            num_captions=8, num_global=2, max_global_sentences=5, pools=("raw", "short", "long")),
        tokenizer=L(ClipTokenizer)(context_length=77),
        batch_size=64,
        num_workers=16,
        seed="${train.seed}",
        resampled=True,
        interleave=4,
        max_bad_fraction=0.01,
    ),
    # colour jitter, grayscale, blur, solarize, CLIP normalisation of the crops, batched
    augment=L("batch_augments.dino_photometric")(),
)
