import math

from cosmos.config import LazyCall as L
from cosmos.meta_arch import COSMOS
from cosmos.models import CosmosStudent

from .clip import model as _clip

# COSMOS ViT-B/16: the CLIP dual encoder plus the cross-modal modules of the official code
# (reference/cosmos-official.md §1.5–1.8). Sizes of the poolers and token mappings follow the
# towers through interpolation, so changing a tower changes them too.
model = L(COSMOS)(
    student=L(CosmosStudent)(
        encoder=_clip.model,
        image_cross_pooler=L("heads.cross_attention_pooler")(
            d_model="${..encoder.visual.output_dim}", heads=8),
        text_cross_pooler=L("heads.cross_attention_pooler")(
            d_model="${..encoder.visual.output_dim}", heads=8),
        image_token_mapping=L("heads.token_mapping")(
            in_dim="${..encoder.visual.width}", out_dim="${..encoder.visual.output_dim}"),
        text_token_mapping=L("heads.token_mapping")(
            in_dim="${..encoder.text.width}", out_dim="${..encoder.text.output_dim}"),
        init_distill_logit_scale=math.log(1 / 0.07),
    ),
    clip_loss=L("losses.clip_infonce")(),
    distill_loss=L("losses.cosmos_infonce")(),
    clip_weight=1.0,
    distill_weight=1.0,
    mask_text_padding=False,   # official: padding positions are cross-attention keys
    trim_text_padding=True,    # exact: shorter text-tower runs (caption 1 full when unmasked)
    cross_attention=True,
    distillation=True,
    num_global_captions=2,
)

# EMA teacher: constant momentum as the official scripts (0.999 at global batch 1k, 0.99 at 4k);
# after the optimizer step by default, `ema.before_optimizer_step=True` for the official order.
ema = dict(
    momentum=L("ema_schedulers.constant")(momentum=0.999),
    before_optimizer_step=False,
)
