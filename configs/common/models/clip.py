import math

from cosmos.config import LazyCall as L
from cosmos.meta_arch import CLIP
from cosmos.models import DualEncoder

# CLIP ViT-B/16 (OpenCLIP's ViT-B-16 shapes). Towers and loss are named through registries, so
# e.g. `model.loss._target_=losses.<name>` swaps the loss from the command line.
model = L(CLIP)(
    model=L(DualEncoder)(
        visual=L("backbones.vit")(image_size=224, patch_size=16, width=768, layers=12, heads=12,
                                  mlp_ratio=4.0, output_dim=512),
        text=L("backbones.text_transformer")(context_length=77, vocab_size=49408, width=512,
                                             layers=12, heads=8, mlp_ratio=4.0, output_dim=512),
        init_logit_scale=math.log(1 / 0.07),
    ),
    loss=L("losses.clip_infonce")(),
)
