"""The backbone contract: what an image or text tower returns and exposes.

A tower is an ``nn.Module`` registered in ``BACKBONES`` and built from a config node
(``model.model.visual`` for CLIP, ``model.student.encoder.visual`` for COSMOS). The dual
encoder, the COSMOS meta-architecture, the evaluators and FSDP rely on the members below;
``tests/package/test_interfaces.py`` checks every registered backbone against them with a tiny
forward pass at real shapes.

Image tower (:class:`ImageTower`):

* ``forward(images (B, 3, H, W) float) -> (pooled (B, output_dim), tokens (B, N, width))``.
  ``pooled`` is the global embedding before normalisation (contrastive losses, retrieval,
  zero-shot classification); ``tokens`` are the per-location features after the last norm,
  the keys and values of COSMOS's text cross-attention pooler (mapped width → output_dim by
  ``heads.token_mapping``, whose ``in_dim`` the configs read from ``visual.width``). Rows are
  independent: sample b's outputs do not depend on the other samples of the batch.
* Every crop size of the crop policy must work in one tower: COSMOS runs its global crops
  (e.g. 224 px) and its local crops (96 px) through the same tower.
* ``output_dim``, ``width``, ``image_size`` (the size the positional table is built for; the
  segmentation evaluator's sliding window uses it).
* Dense segmentation (``cosmos/evaluation/segmentation/dense.py``) additionally needs
  ``patch_size``, ``proj`` (width × output_dim), ``ln_post`` and ``transformer.resblocks``,
  and tokens in raster order of the (H/p, W/p) patch grid. Towers without them train and
  evaluate on everything else; that evaluator then stops with a one-line error.

Text tower (:class:`TextTower`):

* ``forward(tokens (B, L) int64, L ≤ context_length) -> (pooled (B, output_dim),
  features (B, L, width))``. Texts end with EOT, the largest id (``tokens.argmax(-1)``);
  zero padding follows. ``features`` are the keys and values of COSMOS's image cross-attention
  pooler (caption 1; ``in_dim`` of the token mapping is ``text.width``).
* ``output_dim``, ``width``, ``context_length``, ``vocab_size``.
* ``causal`` (class attribute, optional, default False): True promises that the pooled output
  does not depend on positions after a text's EOT, so callers may cut trailing padding
  columns (COSMOS's ``trim_text_padding``, the synthetic evaluator's length sorting).

Both:

* ``fsdp_units() -> List[nn.Module]``: the submodules FSDP shards one by one before the root
  (typically the transformer blocks). Each is a proper submodule of the tower, listed once;
  parameters outside every unit are sharded with the root. An empty list is allowed (the
  tower is then sharded as part of the root).
* ``set_grad_checkpointing(enable=True)`` (optional): recompute activations in backward.
* Parameters: 0-dim parameters cannot be sharded by FSDP2 and are kept replicated (see the
  FSDP module); keep per-tower scalars rare.

The dual encoder (:class:`DualEncoder`, ``cosmos/models/dual_encoder.py``) wraps one of each
and is what the meta-architectures' ``encoders()`` return and the evaluators receive.
"""
from __future__ import annotations

from typing import List, Protocol, Tuple, runtime_checkable

import torch
from torch import nn

__all__ = ["TowerOutput", "Tower", "ImageTower", "TextTower", "DualEncoder"]

TowerOutput = Tuple[torch.Tensor, torch.Tensor]  # (pooled (B, D), tokens (B, N, width))


@runtime_checkable
class Tower(Protocol):
    """Members every backbone has (image and text)."""

    output_dim: int
    width: int

    def __call__(self, x: torch.Tensor) -> TowerOutput: ...

    def fsdp_units(self) -> List[nn.Module]:
        """Submodules FSDP shards separately (each a proper submodule, listed once)."""
        ...


@runtime_checkable
class ImageTower(Tower, Protocol):
    """images (B, 3, H, W) → (pooled (B, output_dim), tokens (B, N, width))."""

    image_size: int


@runtime_checkable
class TextTower(Tower, Protocol):
    """tokens (B, L) int64 → (pooled (B, output_dim), features (B, L, width)); EOT = argmax."""

    context_length: int
    vocab_size: int


@runtime_checkable
class DualEncoder(Protocol):
    """What evaluators and export receive: two towers and a learnable temperature.

    ``logit_scale`` is a 0-dim parameter holding ln(1/τ); ``logit_bias`` (SigLIP) may be None.
    Embeddings are unnormalized unless ``normalize=True``; ``forward`` returns both normalized.
    """

    visual: nn.Module
    text: nn.Module
    logit_scale: torch.Tensor

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """images (B, 3, H, W) → (B, D)."""
        ...

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """tokens (B, L) → (B, D)."""
        ...
