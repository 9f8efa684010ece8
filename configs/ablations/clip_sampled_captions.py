# Cause analysis for the synthetic scenes: the CLIP demo baseline trained on COSMOS's text
# distribution. Each step pairs an image with one caption of 1–5 sentences drawn from the raw,
# short and long captions (what a COSMOS global text crop is), instead of the whole long caption
# that the evaluation uses. Separates "COSMOS the method" from "COSMOS's caption sampling".
# Override: dataloader.train.text_transform={_target_: text_crops.sampled_caption}
from ..clip.clip_tiny_synthetic import (  # noqa: F401
    dataloader, evaluation, lr_multiplier, model, optimizer, train)

dataloader.train.text_transform = {"_target_": "text_crops.sampled_caption",
                                   "max_global_sentences": 5}
train.output_dir = "./runs/ablations/clip_sampled_captions"
