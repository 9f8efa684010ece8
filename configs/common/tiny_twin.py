# Values shared by the tiny synthetic-scene twins of the paper configs (configs/cosmos/tiny/):
# the same recipe and pipeline, a CPU-sized model, 64/24 px crops, the synthetic shards.
TINY_VISUAL = dict(image_size=64, patch_size=8, width=128, layers=4, heads=4, output_dim=128)
TINY_VISUAL_B32 = dict(TINY_VISUAL, patch_size=16)  # B/32's patch is twice B/16's
TINY_TEXT = dict(width=128, layers=4, heads=2, output_dim=128)
TINY_VIEWS = dict(global_size=64, local_size=24)
TINY_DATA = dict(urls="datasets/synthetic_scenes/train-{000000..000009}.tar", batch_size=32,
                 num_workers=1)
# Merged-30M joins three sources with "::", as the official script does.
TINY_MERGED_URLS = ("datasets/synthetic_scenes/train-{000000..000004}.tar::"
                    "datasets/synthetic_scenes/train-{000005..000007}.tar::"
                    "datasets/synthetic_scenes/train-{000008..000009}.tar")
TINY_TRAIN = dict(max_iter=300, checkpoint_period=100, eval_period=0, log_period=20)
TINY_WARMUP = 50
