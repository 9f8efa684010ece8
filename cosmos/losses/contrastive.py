"""Symmetric InfoNCE (the CLIP loss) and its multi-block form LIST used by COSMOS.

Gathering across ranks (``gather``):
  - ``"local"`` (default): each rank scores its own rows against the columns gathered from all
    ranks *with* gradient; labels are offset by the rank. After DDP averages the gradients, they
    equal the gradient of the loss on the single combined batch.
  - ``"official"``: the official COSMOS / OpenCLIP default. Features are gathered *without*
    gradient, the local slot is replaced by the local (grad-carrying) tensor, and every rank forms
    the full (B·W)×(B·W) logits with labels 0…BW−1. After DDP averaging the gradient is the
    combined-batch gradient divided by W.
With one process both are the plain loss.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cosmos.losses.features import Features, as_blocks
from cosmos.registry import LOSSES
from cosmos.utils.distributed import gather_with_grad, get_rank, get_world_size

GATHER_MODES = ("local", "official")


def check_gather(gather: str) -> str:
    """``gather`` itself when it is one of :data:`GATHER_MODES`; a ValueError otherwise."""
    if gather not in GATHER_MODES:
        raise ValueError(f"gather must be one of {GATHER_MODES}, got {gather!r}")
    return gather


def _gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather without gradient, this rank's slot kept as the grad-carrying local tensor."""
    world = get_world_size()
    if world == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[get_rank()] = x
    return torch.cat(parts)


def gather_columns(x: torch.Tensor, gather: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(rows, all columns) for one block: local rows (local mode) or all rows (official mode)."""
    if gather == "local":
        return x, gather_with_grad(x)
    if gather == "official":
        full = _gather_no_grad(x)
        return full, full
    raise ValueError(f"gather must be one of {GATHER_MODES}, got {gather!r}")


def _labels(rows: int, gather: str, device: torch.device) -> torch.Tensor:
    offset = rows * get_rank() if gather == "local" else 0
    return torch.arange(rows, device=device) + offset


def infonce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor,
            gather: str = "local") -> torch.Tensor:
    """NCE(a, b; scale) = ½·[CE(scale·a bᵀ) + CE(scale·b aᵀ)], row i of a matching row i of b.

    a, b: (N, D) local rows, L2-normalized; scale: exp'ed temperature (scalar). → scalar.
    gather="local": rows local, columns gathered with gradient; DDP-averaged gradient = gradient
    of the loss on the combined batch of N·W rows. gather="official": full (N·W)×(N·W) logits,
    gathered without gradient (local slot grad-carrying); DDP-averaged gradient = that ÷ W.
    """
    return list_infonce([a], [b], scale, gather)


def _stack_gathered(blocks: Sequence[torch.Tensor],
                    gather: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gather every block once. → rows (k, R, D), columns (k, C, D)."""
    rows, cols = zip(*(gather_columns(x, gather) for x in blocks))
    return torch.stack(rows), torch.stack(cols)


def list_infonce(a_blocks: Sequence[torch.Tensor], b_blocks: Sequence[torch.Tensor],
                 scale: torch.Tensor, gather: str = "local") -> torch.Tensor:
    """LIST(A, B; τ) = (1/(m·n)) Σ_i Σ_j NCE(A_i, B_j; τ) (the official ``ClipLoss``).

    a_blocks: m blocks (N, D), b_blocks: n blocks (N, D), rows aligned by sample, L2-normalized.
    Every block is gathered once; all pairs' logits come from one batched matmul per direction,
    (m, n, R, C) with R = N (local) or N·W (official) rows and C = N·W columns — the same
    numbers as the double loop over :func:`infonce` up to float rounding. Gradient scaling as
    in :func:`infonce`.
    """
    if not a_blocks or not b_blocks:
        raise ValueError("list_infonce needs at least one block on each side")
    a_rows, a_cols = _stack_gathered(a_blocks, gather)                 # (m, R, D), (m, C, D)
    b_rows, b_cols = _stack_gathered(b_blocks, gather)                 # (n, R, D), (n, C, D)
    m, n, rows = a_rows.shape[0], b_rows.shape[0], a_rows.shape[1]
    labels = _labels(rows, gather, a_rows.device).repeat(m * n)        # (m·n·R,)
    logits_ab = scale * torch.einsum("ird,jcd->ijrc", a_rows, b_cols)   # (m, n, R, C)
    if gather == "official":                                           # R = C: b→a is the transpose
        logits_ba = logits_ab.transpose(-1, -2)
    else:
        logits_ba = scale * torch.einsum("jrd,icd->ijrc", b_rows, a_cols)
    loss_ab = F.cross_entropy(logits_ab.reshape(m * n * rows, -1), labels)
    loss_ba = F.cross_entropy(logits_ba.reshape(m * n * rows, -1), labels)
    return 0.5 * (loss_ab + loss_ba)


def clip_list_loss(image_blocks: Sequence[torch.Tensor], text_blocks: Sequence[torch.Tensor],
                   scale: torch.Tensor, gather: str = "local") -> torch.Tensor:
    """COSMOS's CLIP term L_clip = LIST(image, text; τ_c) (arXiv 2412.01814).

    image_blocks: the global crops' normalized embeddings, 2 × (B, D); text_blocks: all
    captions' normalized embeddings, 8 × (B, D); scale = exp(logit_scale). → scalar.
    """
    return list_infonce(image_blocks, text_blocks, scale, gather)


@LOSSES.register(name="clip_infonce")
class ClipInfoNCE(nn.Module):
    """CLIP's symmetric contrastive loss on L2-normalized embeddings.

    forward(image, text, logit_scale (exp'ed), logit_bias=None) → scalar, where image and text
    are (N, D) tensors, or lists of (N, D) blocks (every image block against every text block:
    COSMOS's global crops × text crops, i.e. :func:`clip_list_loss`). ``logit_bias`` is
    accepted for call compatibility with SigLIP and ignored. ``gather``: see :func:`infonce`.
    """

    def __init__(self, gather: str = "local") -> None:
        super().__init__()
        self.gather = check_gather(gather)

    def forward(self, image_features: Features, text_features: Features, logit_scale: torch.Tensor,
                logit_bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        return list_infonce(as_blocks(image_features), as_blocks(text_features), logit_scale,
                            self.gather)
