import math

from cosmos.config import LazyCall as L
from cosmos.meta_arch import COSMOS
from cosmos.models import CosmosStudent

from .clip import model as _clip

# COSMOS ViT-B/16: the CLIP dual encoder plus the cross-modal modules of the official code
# (ExplainableML/cosmos, src/open_clip/model.py). Sizes of the poolers and token mappings follow
# the towers through interpolation, so changing a tower changes them too. The cross-modal modules
# are factories (`_partial_`): the student builds them only when the objective uses them, so the
# ablations `model.cross_attention=False` and `model.distillation=False` (no teacher, no EMA)
# hold no parameter without a gradient and train under DDP.
model = L(COSMOS)(
    student=L(CosmosStudent)(
        encoder=_clip.model,
        image_cross_pooler=L("heads.cross_attention_pooler")(
            d_model="${..encoder.visual.output_dim}", heads=8, _partial_=True),
        text_cross_pooler=L("heads.cross_attention_pooler")(
            d_model="${..encoder.visual.output_dim}", heads=8, _partial_=True),
        image_token_mapping=L("heads.token_mapping")(
            in_dim="${..encoder.visual.width}", out_dim="${..encoder.visual.output_dim}",
            _partial_=True),
        text_token_mapping=L("heads.token_mapping")(
            in_dim="${..encoder.text.width}", out_dim="${..encoder.text.output_dim}",
            _partial_=True),
        init_distill_logit_scale=math.log(1 / 0.07),
        cross_attention="${..cross_attention}",  # the meta-architecture's flags decide
        distillation="${..distillation}",
    ),
    clip_loss=L("losses.clip_infonce")(),
    distill_loss=L("losses.cosmos_infonce")(),
    clip_weight=1.0,
    distill_weight=1.0,
    mask_text_padding=False,   # official: padding positions are cross-attention keys
    trim_text_padding=True,    # exact: shorter text-tower runs (caption 1 full when unmasked)
    cross_attention=True,      # False: distil the student's own embeddings (no poolers)
    distillation=True,         # False: CLIP loss on the crops only (no teacher, no EMA)
    num_global_captions=2,
)

# EMA teacher: constant momentum as the official scripts (0.999 at global batch 1k, 0.99 at 4k);
# after the optimizer step by default, `ema.before_optimizer_step=True` for the official order.
ema = dict(
    momentum=L("ema_schedulers.constant")(momentum=0.999),
    before_optimizer_step=False,
)
