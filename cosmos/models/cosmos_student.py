"""The COSMOS student: a dual encoder plus the cross-modal modules (the unit the EMA teacher
copies)."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
from torch import nn

from cosmos.models.attention_source import AttentionSource
from cosmos.utils.errors import ConfigError

#: A sub-module, or a factory that builds it (a config node with ``_partial_: true``): a factory
#: is called only when the part is used, so an ablation builds nothing it does not use.
Part = Union[nn.Module, Callable[[], nn.Module]]
CROSS_MODAL_PARTS = ("image_cross_pooler", "text_cross_pooler", "image_token_mapping",
                     "text_token_mapping")


class CosmosStudent(nn.Module):
    """Dual encoder + two cross-attention poolers + two token mappings + a distillation temperature.

    Naming follows what each module produces (official key in brackets; ExplainableML/cosmos,
    ``src/open_clip/model.py`` and ``transformer.py::AttentionalCrossPooler``):
      - ``image_cross_pooler`` [``text_attn_cross_pool``]: image-crop queries attend over the
        tokens of global caption 1 → image cross-modal embeddings;
      - ``text_cross_pooler`` [``visual.attn_cross_pool``]: caption queries attend over the patch
        tokens of global image crop 1 → text cross-modal embeddings;
      - ``image_token_mapping`` (width_v → D) and ``text_token_mapping`` (width_t → D);
      - ``distill_logit_scale``: log of the distillation temperature's inverse.

    Only the parts the objective uses exist (DDP needs a gradient for every parameter):
    ``distillation=False`` builds no ``distill_logit_scale`` and no cross-modal modules (they
    feed only the distillation); ``cross_attention=False`` builds no cross-modal modules. The
    four cross-modal parts are modules or factories, built in the order of the signature (so a
    model with all parts draws its initialisation exactly as when they were passed built).
    """

    def __init__(self, encoder: nn.Module, image_cross_pooler: Optional[Part] = None,
                 text_cross_pooler: Optional[Part] = None,
                 image_token_mapping: Optional[Part] = None,
                 text_token_mapping: Optional[Part] = None,
                 init_distill_logit_scale: float = math.log(1 / 0.07),
                 cross_attention: bool = True, distillation: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        parts = dict(zip(CROSS_MODAL_PARTS, (image_cross_pooler, text_cross_pooler,
                                             image_token_mapping, text_token_mapping)))
        if cross_attention and distillation:
            missing = [name for name, part in parts.items() if part is None]
            if missing:
                raise ConfigError(f"CosmosStudent with cross_attention=True needs {missing} "
                                  "(or set cross_attention=False)")
            for name, part in parts.items():
                setattr(self, name, part if isinstance(part, nn.Module) else part())
        if distillation:
            self.distill_logit_scale = nn.Parameter(torch.tensor(float(init_distill_logit_scale)))

    @property
    def has_cross_attention(self) -> bool:
        """The cross-modal modules (poolers and token mappings) exist."""
        return hasattr(self, CROSS_MODAL_PARTS[0])

    @property
    def has_distillation(self) -> bool:
        """The distillation temperature exists."""
        return hasattr(self, "distill_logit_scale")

    def attention_source(self) -> AttentionSource:
        """Attention maps from the cross-attention poolers (caption padding not masked, as in
        the official code); from the towers when the student has no poolers."""
        if not self.has_cross_attention:
            return AttentionSource(self.encoder, note="the student has no cross-attention modules")
        return AttentionSource(self.encoder, cross=self)
