from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer, ShardStream

from .synthetic import evaluation  # noqa: F401  (held-out scenes, generated in memory)

# The built-in synthetic scenes read from webdataset shards, the path a cluster job takes.
# `make shards` (run by `make demo`) writes them: 10 shards x 1,000 scenes of 64 px.
dataloader = dict(
    train=L(ShardStream)(
        urls="datasets/synthetic_scenes/train-{000000..000009}.tar",
        image_transform=L("image_crops.clip_single")(size=64, scale=(0.9, 1.0)),
        text_transform=L("text_crops.full_caption")(pool="long"),
        tokenizer=L(ClipTokenizer)(context_length=77),
        batch_size=64,
        num_workers=1,
        seed="${train.seed}",
        resampled=True,
    ),
)
