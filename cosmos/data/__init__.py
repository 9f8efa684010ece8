"""Datasets, crop policies, tokenizer and loaders. Importing this package registers them."""
from cosmos.data import synthetic  # noqa: F401  (registers datasets)
from cosmos.data import transforms  # noqa: F401  (registers crop policies)
from cosmos.data.loader import ResumableLoader, collate  # noqa: F401
from cosmos.data.shards import ShardStream  # noqa: F401
from cosmos.data.tokenizer import ClipTokenizer  # noqa: F401
from cosmos.data import multicrop, multicrop_fast, photometric, text_crops  # noqa: F401
from cosmos.data import csv_dataset  # noqa: F401  (registers csv_pairs)
