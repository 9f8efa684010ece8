"""Image↔text retrieval recall, defined as CLIP_benchmark defines it (hit within top k)."""
from __future__ import annotations

from typing import Dict, Sequence

import torch


def retrieval_metrics(similarity: torch.Tensor, text_to_image: torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> Dict[str, float]:
    """Recall@k in percent for both directions.

    Args:
        similarity: (num_images, num_texts) scores.
        text_to_image: (num_texts,) index of the image each text describes.
    Returns:
        ``i2t_R@k``: share of images with at least one of their texts among their top k texts;
        ``t2i_R@k``: share of texts whose image is among their top k images.
        A query's rank counts the candidates scoring strictly higher than its best positive.
    """
    sim = similarity.float()
    text_to_image = torch.as_tensor(text_to_image, dtype=torch.long, device=sim.device)
    num_images, num_texts = sim.shape
    if text_to_image.shape != (num_texts,):
        raise ValueError(
            f"text_to_image has shape {tuple(text_to_image.shape)}, expected ({num_texts},)")
    texts = torch.arange(num_texts, device=sim.device)
    positive = sim[text_to_image, texts]                               # (T,)
    t2i_rank = (sim > positive[None, :]).sum(dim=0)                    # (T,)
    positive_mask = torch.zeros_like(sim, dtype=torch.bool)
    positive_mask[text_to_image, texts] = True
    best_positive = sim.masked_fill(~positive_mask, float("-inf")).amax(dim=1)  # (I,)
    i2t_rank = (sim > best_positive[:, None]).sum(dim=1)               # (I,)
    has_text = positive_mask.any(dim=1)
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = (100.0 * float((i2t_rank[has_text] < k).double().mean())
                             if has_text.any() else 0.0)
        out[f"t2i_R@{k}"] = 100.0 * float((t2i_rank < k).double().mean())
    return out
