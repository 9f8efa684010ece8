"""Shared data settings for the nested test config."""
dataloader = dict(batch_size=32, shards="s3://bucket/{000..009}.tar")
