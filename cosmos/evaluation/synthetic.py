"""Zero-shot evaluation on held-out synthetic scenes (mirrors the paper's tasks).

- full-caption retrieval (all sentences joined), image↔text R@1/5/10;
- small-object retrieval: each sentence about a small object is a text query (t2i R@k);
- zero-shot classification of the dominant object's shape (prompt ensembles).
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from cosmos.evaluation.retrieval import retrieval_metrics
from cosmos.registry import EVALUATORS
from cosmos.utils.modules import eval_mode, module_device

logger = logging.getLogger(__name__)


@torch.no_grad()
def embed_texts(model: nn.Module, tokenizer: Callable, texts: List[str], batch_size: int,
                device: torch.device) -> torch.Tensor:
    """Normalized text embeddings (N, D), computed in chunks of ``batch_size``."""
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[i:i + batch_size]).to(device)
        out.append(model.encode_text(tokens, normalize=True).float().cpu())
    return torch.cat(out)


def _text_lengths(tokens: torch.Tensor) -> torch.Tensor:
    """(N,) index of the last non-padding (non-zero) token + 1."""
    positions = torch.arange(1, tokens.shape[1] + 1).expand_as(tokens)
    return torch.where(tokens != 0, positions, torch.zeros_like(positions)).amax(dim=1)


@torch.no_grad()
def embed_tokens(model: nn.Module, tokens: torch.Tensor, batch_size: int,
                 device: torch.device) -> torch.Tensor:
    """Normalized text embeddings (N, D) float32 on the CPU of (N, L) token ids (0 = padding).

    With a causal text tower (``model.text.causal``) the texts go in order of length and each
    chunk is cut after its longest text: the output is the same up to float rounding (the
    size of the differences between batch sizes), and short texts cost much less. Used by the
    fine-grained evaluators; :func:`embed_texts` (retrieval, classification) keeps the
    full-length path so that their numbers stay those of earlier runs.
    """
    if len(tokens) == 0:
        raise ValueError("no texts to embed")
    order = torch.arange(len(tokens))
    lengths = None
    if getattr(getattr(model, "text", None), "causal", False):
        lengths = _text_lengths(tokens)
        order = torch.argsort(lengths, stable=True)
    out = None
    for i in range(0, len(tokens), batch_size):
        rows = order[i:i + batch_size]
        chunk = tokens[rows]
        if lengths is not None:
            chunk = chunk[:, :max(int(lengths[rows].max()), 1)]
        emb = model.encode_text(chunk.to(device), normalize=True).float().cpu()
        if out is None:
            out = torch.empty(len(tokens), emb.shape[1])
        out[rows] = emb
    return out


@torch.no_grad()
def embed_images(model: nn.Module, images: List[torch.Tensor], batch_size: int,
                 device: torch.device) -> torch.Tensor:
    """Normalized image embeddings (N, D) of preprocessed (3, H, W) tensors."""
    out = []
    for i in range(0, len(images), batch_size):
        batch = torch.stack(images[i:i + batch_size]).to(device)
        out.append(model.encode_image(batch, normalize=True).float().cpu())
    return torch.cat(out)


@EVALUATORS.register(name="synthetic_scenes")
class SceneEvaluator:
    """evaluator(model: dual encoder) → {metric name: value in percent}."""

    def __init__(self, dataset, transform: Callable, tokenizer: Callable, batch_size: int = 64,
                 num_samples: Optional[int] = None) -> None:
        self.dataset, self.transform, self.tokenizer = dataset, transform, tokenizer
        self.batch_size = batch_size
        self.num_samples = min(num_samples or len(dataset), len(dataset))
        self._cache = None

    def _prepare(self):
        """Preprocessed images, texts and labels (built once, reused at every evaluation)."""
        if self._cache is None:
            images, captions, small, small_owner, labels = [], [], [], [], []
            for i in range(self.num_samples):
                sample = self.dataset[i]
                images.append(self.transform(sample["image"])["images"])
                sentences = sample["captions"]["long"]
                captions.append(" ".join(sentences))
                labels.append(int(sample["label"]))
                for obj, sentence in zip(sample["objects"][1:], sentences[1:]):
                    small.append(sentence)
                    small_owner.append(i)
            self._cache = images, captions, small, torch.tensor(small_owner), torch.tensor(labels)
        return self._cache

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> Dict[str, float]:
        images, captions, small, small_owner, labels = self._prepare()
        device = module_device(model)
        with eval_mode(model):
            return self._evaluate(model, device, images, captions, small, small_owner, labels)

    def _evaluate(self, model: nn.Module, device: torch.device, images, captions, small,
                  small_owner, labels) -> Dict[str, float]:
        img = embed_images(model, images, self.batch_size, device)
        results = {}
        txt = embed_texts(model, self.tokenizer, captions, self.batch_size, device)
        for k, v in retrieval_metrics(img @ txt.T, torch.arange(len(captions))).items():
            results[f"retrieval/{k}"] = v
        small_txt = embed_texts(model, self.tokenizer, small, self.batch_size, device)
        for k, v in retrieval_metrics(img @ small_txt.T, small_owner).items():
            results[f"small_object/{k}"] = v
        names = self.dataset.class_names() if hasattr(self.dataset, "class_names") else None
        has_templates = hasattr(self.dataset, "prompt_templates")
        templates = self.dataset.prompt_templates() if has_templates else None
        if names and templates:
            weights = torch.stack([
                F.normalize(embed_texts(model, self.tokenizer, [t.format(n) for t in templates],
                                        self.batch_size, device).mean(0), dim=-1) for n in names])
            top1 = (img @ weights.T).argmax(dim=1)
            results["classification/top1"] = 100.0 * float((top1 == labels).double().mean())
        return results
