"""The COSMOS student: a dual encoder plus the cross-modal modules (the unit the EMA teacher copies)."""
from __future__ import annotations

import math

import torch
from torch import nn

from cosmos.models.attention_source import AttentionSource


class CosmosStudent(nn.Module):
    """Dual encoder + two cross-attention poolers + two token mappings + a distillation temperature.

    Naming follows what each module produces (official key in brackets, see
    reference/cosmos-official.md §1.6–§1.8):
      - ``image_cross_pooler`` [``text_attn_cross_pool``]: image-crop queries attend over the
        tokens of global caption 1 → image cross-modal embeddings;
      - ``text_cross_pooler`` [``visual.attn_cross_pool``]: caption queries attend over the patch
        tokens of global image crop 1 → text cross-modal embeddings;
      - ``image_token_mapping`` (width_v → D) and ``text_token_mapping`` (width_t → D);
      - ``distill_logit_scale``: log of the distillation temperature's inverse.
    """

    def __init__(self, encoder: nn.Module, image_cross_pooler: nn.Module, text_cross_pooler: nn.Module,
                 image_token_mapping: nn.Module, text_token_mapping: nn.Module,
                 init_distill_logit_scale: float = math.log(1 / 0.07)) -> None:
        super().__init__()
        self.encoder = encoder
        self.image_cross_pooler = image_cross_pooler
        self.text_cross_pooler = text_cross_pooler
        self.image_token_mapping = image_token_mapping
        self.text_token_mapping = text_token_mapping
        self.distill_logit_scale = nn.Parameter(torch.tensor(float(init_distill_logit_scale)))

    def attention_source(self) -> AttentionSource:
        """Attention maps from the cross-attention poolers (caption padding not masked, as in
        the official code); from the towers when the student has no poolers."""
        if self.image_cross_pooler is None or self.text_cross_pooler is None:
            return AttentionSource(self.encoder, note="the student has no cross-attention modules")
        return AttentionSource(self.encoder, cross=self)
