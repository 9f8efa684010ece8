"""What the COSMOS cross-attention looks at: weights over image patches and over caption words.

For one image and its caption, the text→image cross pooler (the caption's global embedding as the
query over the image's patch tokens) gives a map over the patch grid, and the image→text cross
pooler (the image's global embedding as the query over the caption's tokens) gives a weight per
word; both are min-max scaled to [0, 1] for the figures (the softmax weights are kept in the
JSON). Models without trained cross poolers (CLIP, an exported ``student.pth``) fall back to the
towers' last-layer self-attention: the class token over the patches, the EOT token over the words.

The fused attention kernels do not return their weights, so :func:`attention_weights` recomputes
them from the modules' parameters; :func:`apply_attention` turns weights back into the module's
output, which is how the tests prove that these are the weights the model uses.

Outputs of :func:`render_attention` (``P`` = prefix): ``P_image.png`` (input | normalised map over
the image | raw map), ``P_words.png`` (the caption, each word on a background as dark as its
weight), ``P.png`` (both), ``P_heads.png`` (each head, with ``heads="all"``) and ``P.json``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from cosmos.utils.atomic import atomic_write, atomic_write_text
from cosmos.utils.errors import CheckpointError, ConfigError, CosmosError

__all__ = ["AttentionMaps", "attention_weights", "apply_attention", "pooler_weights",
           "compute_attention", "caption_words", "summarise", "render_attention",
           "load_for_visualization", "find_config", "default_transform", "default_tokenizer",
           "open_image"]

CROSS = "cross_attention"
FALLBACK = "last_layer_self_attention"
HEAD_MODES = ("mean", "all")

DPI = 100
WIDTH_PX = 1200        # every figure is 1200 px wide
IMAGE_ROW_PX = 400     # the image figure: input | overlay | raw map
TITLE_PX = 55          # title band of the combined figure
FONT_PT = 14           # caption words
_LINE_PX, _BOX_PX, _MIN_BOX_PX, _MARGIN_PX, _PAD_PX, _GAP_PX = 52, 28, 30, 20, 6, 6
_WORD_CMAP, _MAP_CMAP, _RAW_CMAP = "YlOrRd", "jet", "viridis"


# ----------------------------------------------------------------------------- weights
def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L, d) → (B, H, L, d / H)."""
    b, length, d = x.shape
    return x.view(b, length, heads, d // heads).transpose(1, 2)


def attention_weights(attn: nn.Module, query: torch.Tensor, keys: torch.Tensor,
                      key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Softmax weights of an attention module with packed [Q; K; V] projections.

    ``attn``: :class:`~cosmos.models.cross_attention.CrossAttention` or
    :class:`~cosmos.layers.blocks.MultiheadSelfAttention`. query (B, Lq, d), keys (B, Lk, d) as
    the module receives them (after any LayerNorm); key_padding_mask (B, Lk) bool, True = ignore
    → (B, H, Lq, Lk) float32, each row summing to 1.
    """
    d = query.shape[-1]
    w_q, w_k, _ = attn.in_proj_weight.split(d)
    b_q, b_k, _ = attn.in_proj_bias.split(d)
    q = _split_heads(F.linear(query, w_q, b_q), attn.heads).float()
    k = _split_heads(F.linear(keys, w_k, b_k), attn.heads).float()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


def apply_attention(attn: nn.Module, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """The module's output for given weights: ``out_proj(weights · V)``.

    weights (B, H, Lq, Lk), keys (B, Lk, d) (the values) → (B, Lq, d).
    """
    d = keys.shape[-1]
    w_v, b_v = attn.in_proj_weight.split(d)[2], attn.in_proj_bias.split(d)[2]
    v = _split_heads(F.linear(keys, w_v, b_v), attn.heads)
    out = weights.to(v.dtype) @ v  # (B, H, Lq, d / H)
    return attn.out_proj(out.transpose(1, 2).flatten(2))


def pooler_weights(pooler: nn.Module, query: torch.Tensor, tokens: torch.Tensor,
                   key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weights of an :class:`AttentionalCrossPooler` for one query per sample.

    query (B, d) (raw global embedding), tokens (B, Lk, d), key_padding_mask (B, Lk) → (B, H, Lk).
    """
    q, k = pooler.ln_q(query)[:, None], pooler.ln_k(tokens)
    return attention_weights(pooler.attn, q, k, key_padding_mask)[:, :, 0]


def _last_layer_weights(tower: nn.Module, inputs: torch.Tensor, query_index: int,
                        key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weights (B, H, L) of token ``query_index`` in the tower's last self-attention block."""
    blocks = getattr(getattr(tower, "transformer", None), "resblocks", None)
    if not blocks:
        raise CosmosError(f"cannot read attention from a {type(tower).__name__} tower (no "
                          "transformer.resblocks): this model has neither cross-attention nor "
                          "readable last-layer attention")
    attn = blocks[-1].attn
    seen: Dict[str, torch.Tensor] = {}

    def keep_input(module: nn.Module, args: Tuple[torch.Tensor, ...]) -> None:
        seen["x"] = args[0]  # ln_1(x): what the last block attends over

    handle = attn.register_forward_pre_hook(keep_input)
    try:
        tower(inputs)
    finally:
        handle.remove()
    x = seen["x"]
    return attention_weights(attn, x[:, query_index:query_index + 1], x, key_padding_mask)[:, :, 0]


# ----------------------------------------------------------------------------- model pass
@dataclass
class AttentionMaps:
    """Raw attention of one image-caption pair.

    patches (Hv, gh, gw): weights over the patch grid per head (the class token's weight on
    itself is left out in the fallback); tokens (Ht, L): weights over all caption positions per
    head; token_ids: the L caption ids; source: :data:`CROSS` or :data:`FALLBACK`; note: why the
    fallback was used ('' otherwise).
    """
    patches: torch.Tensor
    tokens: torch.Tensor
    token_ids: List[int]
    source: str
    note: str


def _select(model: nn.Module, encoder: str) -> Tuple[nn.Module, Optional[nn.Module], bool, str]:
    """(dual encoder, module holding the cross poolers or None, mask_text_padding, note)."""
    if hasattr(model, "student") and hasattr(model, "teacher"):  # COSMOS, or an official pair
        if encoder not in ("student", "teacher"):
            raise CosmosError(f"unknown encoder {encoder!r}; this model has ['student', 'teacher']")
        unit = getattr(model, encoder)
        if not getattr(model, "cross_attention", True):
            return (unit.encoder, None, False,
                    "the model was trained with model.cross_attention=False")
        return unit.encoder, unit, bool(getattr(model, "mask_text_padding", False)), ""
    if hasattr(model, "text_cross_pooler"):  # a CosmosStudent on its own
        return model.encoder, model, False, ""
    if hasattr(model, "encoders"):  # CLIP
        encoders = model.encoders()
        if encoder not in encoders:
            raise CosmosError(f"unknown encoder {encoder!r}; this model has {sorted(encoders)}")
        return encoders[encoder], None, False, "the model has no cross-attention modules"
    if hasattr(model, "visual") and hasattr(model, "text"):
        return model, None, False, "an exported encoder holds no cross-attention modules"
    raise CosmosError(f"cannot visualise a {type(model).__name__}: expected a COSMOS or CLIP "
                      "meta-architecture, a COSMOS student or a dual encoder")


def _patch_grid(visual: nn.Module, images: torch.Tensor, n: int) -> Tuple[int, int]:
    h, w = images.shape[-2:]
    p = getattr(visual, "patch_size", None)
    if isinstance(p, int) and (h // p) * (w // p) == n:
        return h // p, w // p
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise CosmosError(f"cannot arrange {n} image tokens of a {h}x{w} input into a patch grid")
    return side, side


def _padding_mask(tokens: torch.Tensor) -> torch.Tensor:
    """(B, L) True after each sequence's EOT (the argmax id), as the COSMOS meta-architecture."""
    from cosmos.meta_arch.cosmos import padding_mask
    return padding_mask(tokens)


@torch.no_grad()
def compute_attention(model: nn.Module, image: torch.Tensor, token_ids: torch.Tensor,
                      encoder: str = "student") -> AttentionMaps:
    """Attention of ``model`` (in eval mode) for image (3, H, W) (normalised model input) and
    caption token_ids (L,)."""
    dual, unit, mask_padding, note = _select(model, encoder)
    param = next(dual.parameters())
    images = image[None].to(param.device, param.dtype)
    tokens = token_ids.reshape(1, -1).to(param.device)
    p = getattr(dual.visual, "patch_size", None)
    if isinstance(p, int) and (images.shape[-1] % p or images.shape[-2] % p):
        raise CosmosError(f"the image transform gives {tuple(images.shape[-2:])} px, not a "
                          f"multiple of the patch size {p}")
    limit = getattr(dual.text, "context_length", tokens.shape[1])
    if tokens.shape[1] > limit:
        raise CosmosError(f"the tokenizer gives {tokens.shape[1]} tokens; the text tower takes "
                          f"at most {limit}")
    if unit is not None:
        pooled_image, patches = dual.visual(images)
        pooled_text, features = dual.text(tokens)
        mask = _padding_mask(tokens) if mask_padding else None
        over_patches = pooler_weights(unit.text_cross_pooler, pooled_text,
                                      unit.image_token_mapping(patches))
        over_tokens = pooler_weights(unit.image_cross_pooler, pooled_image,
                                     unit.text_token_mapping(features), mask)
        source = CROSS
    else:
        over_patches = _last_layer_weights(dual.visual, images, 0)[:, :, 1:]  # class token out
        eot = int(tokens[0].argmax())
        over_tokens = _last_layer_weights(dual.text, tokens, eot, _padding_mask(tokens))
        source = FALLBACK
    grid = _patch_grid(dual.visual, images, over_patches.shape[-1])
    return AttentionMaps(patches=over_patches[0].reshape(-1, *grid).float().cpu(),
                         tokens=over_tokens[0].float().cpu(), token_ids=tokens[0].tolist(),
                         source=source, note=note)


# ----------------------------------------------------------------------------- words
def caption_words(token_ids: Sequence[int]) -> List[Tuple[str, List[int]]]:
    """BPE tokens between SOT and EOT merged into words → [(word, positions in token_ids)].

    A word ends at a token ending in ``</w>``; punctuation is a word of its own.
    """
    from cosmos.data.tokenizer import SOT_TOKEN, _bpe

    ids = [int(t) for t in token_ids]
    if not ids:
        return []
    bpe = _bpe()
    eot = int(np.argmax(ids))
    words: List[Tuple[str, List[int]]] = []
    pieces: List[str] = []
    positions: List[int] = []
    for pos in range(1 if ids[0] == SOT_TOKEN else 0, eot):
        piece = bpe.decoder.get(ids[pos], "")
        pieces.append(piece)
        positions.append(pos)
        if piece.endswith("</w>"):
            words.append((_decode(bpe, pieces), positions))
            pieces, positions = [], []
    if pieces:  # the caption was cut inside a word
        words.append((_decode(bpe, pieces), positions))
    return words


def _decode(bpe: Any, pieces: Sequence[str]) -> str:
    text = "".join(pieces).replace("</w>", "")
    raw = bytearray(bpe.byte_decoder[c] for c in text if c in bpe.byte_decoder)
    return raw.decode("utf-8", errors="replace")


def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] (min exactly 0, max exactly 1; all ones when x is constant)."""
    if not x.size:
        return x
    low, span = float(x.min()), float(x.max() - x.min())
    return (x - low) / span if span > 0 else np.ones_like(x)


def summarise(maps: AttentionMaps, heads: str = "mean") -> Dict[str, Any]:
    """Weights as plain lists, min-max normalised (mean over heads; each head too with
    ``heads="all"``); ``patches_raw`` and each word's ``raw`` keep the softmax weights.

    Word weights are the attention mass of each word's BPE tokens; SOT, EOT and padding are left
    out (``mass_on_words`` says how much of the attention the words receive).
    """
    words = caption_words(maps.token_ids)
    if not words:
        raise CosmosError("the caption has no words to show")
    patches = maps.patches.double().numpy()  # (Hv, gh, gw)
    tokens = maps.tokens.double().numpy()    # (Ht, L)
    per_word = np.stack([tokens[:, pos].sum(axis=1) for _, pos in words], axis=1)  # (Ht, n)
    mean_patches, mean_words = patches.mean(axis=0), per_word.mean(axis=0)
    out: Dict[str, Any] = {
        "source": maps.source, "note": maps.note, "heads": heads,
        "num_heads": {"image": int(patches.shape[0]), "text": int(tokens.shape[0])},
        "grid": list(mean_patches.shape),
        "patches": _normalise(mean_patches).tolist(),
        "patches_raw": mean_patches.tolist(),
        "words": [{"word": word, "weight": float(w), "raw": float(r), "tokens": pos}
                  for (word, pos), w, r in zip(words, _normalise(mean_words), mean_words)],
        "mass_on_patches": float(mean_patches.sum()),
        "mass_on_words": float(mean_words.sum()),
    }
    if heads == "all":
        out["per_head"] = {"patches": [_normalise(p).tolist() for p in patches],
                           "words": [_normalise(w).tolist() for w in per_word]}
    return out


# ----------------------------------------------------------------------------- inputs
def open_image(path: str) -> Image.Image:
    """An RGB PIL image; a missing or unreadable file is a one-line error."""
    if not os.path.isfile(path):
        raise CosmosError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for a bad file
        raise CosmosError(f"cannot read image {path}: {str(exc).splitlines()[0][:200]}") from None


def _to_pixels(out: Any) -> torch.Tensor:
    """A transform's output (tensor, or dict with ``images``) → (3, H, W)."""
    if isinstance(out, dict):
        out = out.get("images", next(iter(out.values()), None))
    if not isinstance(out, torch.Tensor) or out.dim() != 3:
        raise CosmosError("the image transform must give a (3, H, W) tensor or {'images': tensor}")
    return out


def _normalisation(transform: Any) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(mean, std) of the ``Normalize`` inside a transform (searched a few levels deep)."""
    from torchvision.transforms import Normalize

    stack, seen = [transform], 0
    while stack and seen < 64:
        t, seen = stack.pop(), seen + 1
        if isinstance(t, Normalize):
            return torch.tensor(t.mean).view(3, 1, 1), torch.tensor(t.std).view(3, 1, 1)
        stack.extend(getattr(t, "transforms", None) or [])
        if getattr(t, "transform", None) is not None:
            stack.append(t.transform)
    return None


def _display_image(pixels: torch.Tensor, transform: Any) -> np.ndarray:
    """The model's input (3, H, W) as an (H, W, 3) image in [0, 1]."""
    stats = _normalisation(transform)
    if stats is not None:
        shown = pixels.float() * stats[1] + stats[0]
    else:  # unknown normalisation: stretch each channel
        low = pixels.amin(dim=(1, 2), keepdim=True)
        shown = (pixels - low) / (pixels.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-8)
    return shown.clamp(0, 1).permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- figures
def _figure(height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _round_px(px: float) -> int:
    """Round up to a multiple of 25 px (a quarter inch: exact figure sizes in pixels)."""
    return int(math.ceil(px / 25.0) * 25)


def _save(fig: Any, path: str) -> str:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, facecolor="white"))
    return path


def _axes(fig: Any, height_px: int, left: float, top: float, width: float, height: float):
    """Axes at a pixel rectangle (from the top-left corner of the figure)."""
    return fig.add_axes((left / WIDTH_PX, 1 - (top + height) / height_px,
                         width / WIDTH_PX, height / height_px))


def _upsample(grid: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.asarray(grid, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _draw_image_row(fig: Any, height_px: int, top: float, shown: np.ndarray,
                    normalised: np.ndarray, raw: np.ndarray) -> None:
    """Input | normalised map over the input | raw map with its colour bar, 400 px high."""
    side, gap, left = 330, 380, 30
    h, w = shown.shape[:2]
    titles = ("input (as the model sees it)", "attention over patches (normalised)",
              f"raw weights ({raw.shape[0]}x{raw.shape[1]} patches)")
    axes = [_axes(fig, height_px, left + i * gap, top + 40, side, side) for i in range(3)]
    for ax, title in zip(axes, titles):
        ax.set_axis_off()
        ax.set_title(title, fontsize=11)
    axes[0].imshow(shown, interpolation="nearest")
    axes[1].imshow(shown, interpolation="nearest")
    axes[1].imshow(_upsample(normalised, (h, w)), cmap=_MAP_CMAP, alpha=0.5, vmin=0, vmax=1,
                   extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    image = axes[2].imshow(raw, cmap=_RAW_CMAP, interpolation="nearest")
    cax = _axes(fig, height_px, left + 2 * gap + side + 8, top + 40, 12, side)
    fig.colorbar(image, cax=cax, format="%.3f").ax.tick_params(labelsize=8)


def _word_width(renderer: Any, prop: Any, word: str) -> float:
    return renderer.get_text_width_height_descent(word, prop, ismath=False)[0]


Box = Tuple[float, int, float]  # x (px), line, width (px)


def _layout_words(words: Sequence[str], indent: float = 0.0) -> Tuple[List[Box], int]:
    """Boxes (x, line, width) in pixels that wrap the words within the figure width → (boxes,
    number of lines)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer, prop = RendererAgg(8, 8, DPI), FontProperties(size=FONT_PT)
    boxes, x, line = [], _MARGIN_PX + indent, 0
    for word in words:
        width = max(_word_width(renderer, prop, word) + 2 * _PAD_PX, _MIN_BOX_PX)
        if x + width > WIDTH_PX - _MARGIN_PX and x > _MARGIN_PX + indent:
            x, line = _MARGIN_PX + indent, line + 1
        boxes.append((x, line, width))
        x += width + _GAP_PX
    return boxes, line + 1 if words else 0


def _words_height(lines: int) -> int:
    return 2 * _MARGIN_PX + lines * _LINE_PX


def _draw_words(fig: Any, height_px: int, top: float, words: Sequence[str],
                weights: Sequence[float], boxes: Sequence[Box],
                label: str = "") -> None:
    """Each word on a background whose intensity is its weight, the weight in small type below."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    cmap = colormaps[_WORD_CMAP]
    if label:
        fig.text(_MARGIN_PX / WIDTH_PX, 1 - (top + _MARGIN_PX + _BOX_PX / 2) / height_px, label,
                 fontsize=10, va="center", ha="left", color="0.3")
    for word, weight, (x, line, width) in zip(words, weights, boxes):
        y = top + _MARGIN_PX + line * _LINE_PX
        fig.add_artist(Rectangle((x / WIDTH_PX, 1 - (y + _BOX_PX) / height_px), width / WIDTH_PX,
                                 _BOX_PX / height_px, transform=fig.transFigure,
                                 facecolor=cmap(float(weight)), edgecolor="0.75", linewidth=0.5))
        color = "white" if weight > 0.6 else "black"
        center = (x + width / 2) / WIDTH_PX
        fig.text(center, 1 - (y + _BOX_PX / 2) / height_px, word, fontsize=FONT_PT, ha="center",
                 va="center_baseline", color=color, parse_math=False)
        fig.text(center, 1 - (y + _BOX_PX + 11) / height_px, f"{weight:.2f}", fontsize=8,
                 ha="center", va="center", color="0.35")


def _title(summary: Dict[str, Any], heads: str = "") -> str:
    """Two lines: what is shown, then encoder and head reduction (or why the fallback)."""
    where = f"{summary['encoder']}, {heads or 'mean over heads'}"
    if summary["source"] == CROSS:
        return ("COSMOS cross-attention: caption -> image patches, image -> caption words"
                f"\n[{where}]")
    return ("fallback: the towers' last-layer self-attention: class token -> patches, EOT token "
            f"-> words\n[{summary['note']}; {where}]")


def _image_figure(path: str, shown: np.ndarray, summary: Dict[str, Any]) -> str:
    fig = _figure(IMAGE_ROW_PX)
    _draw_image_row(fig, IMAGE_ROW_PX, 0, shown, np.array(summary["patches"]),
                    np.array(summary["patches_raw"]))
    return _save(fig, path)


def _words_figure(path: str, summary: Dict[str, Any]) -> str:
    words = [w["word"] for w in summary["words"]]
    boxes, lines = _layout_words(words)
    height = _round_px(30 + _words_height(lines))
    fig = _figure(height)
    fig.text(_MARGIN_PX / WIDTH_PX, 1 - 18 / height, "attention over caption words (normalised)",
             fontsize=11, va="center")
    _draw_words(fig, height, 30, words, [w["weight"] for w in summary["words"]], boxes)
    return _save(fig, path)


def _combined_figure(path: str, shown: np.ndarray, summary: Dict[str, Any]) -> str:
    words = [w["word"] for w in summary["words"]]
    boxes, lines = _layout_words(words)
    height = _round_px(TITLE_PX + IMAGE_ROW_PX + _words_height(lines))
    fig = _figure(height)
    fig.text(0.5, 1 - 24 / height, _title(summary), fontsize=11, ha="center", va="center",
             parse_math=False, linespacing=1.4)
    _draw_image_row(fig, height, TITLE_PX, shown, np.array(summary["patches"]),
                    np.array(summary["patches_raw"]))
    _draw_words(fig, height, TITLE_PX + IMAGE_ROW_PX, words,
                [w["weight"] for w in summary["words"]], boxes)
    return _save(fig, path)


def _heads_figure(path: str, shown: np.ndarray, summary: Dict[str, Any]) -> str:
    """One overlay per image-side head in a row, then one line of words per text-side head."""
    maps, word_rows = summary["per_head"]["patches"], summary["per_head"]["words"]
    words = [w["word"] for w in summary["words"]]
    side = min(250, (WIDTH_PX - 2 * _MARGIN_PX) // len(maps) - 10)
    layouts = [_layout_words(words, indent=70) for _ in word_rows]
    top_words = TITLE_PX + side + 40
    height = _round_px(top_words + sum(_words_height(n) for _, n in layouts))
    fig = _figure(height)
    fig.text(0.5, 1 - 24 / height, _title(summary, "each head"), fontsize=11, ha="center",
             va="center", parse_math=False, linespacing=1.4)
    h, w = shown.shape[:2]
    for i, grid in enumerate(maps):
        ax = _axes(fig, height, _MARGIN_PX + i * (side + 10), TITLE_PX + 20, side, side)
        ax.set_axis_off()
        ax.set_title(f"head {i}", fontsize=10)
        ax.imshow(shown, interpolation="nearest")
        ax.imshow(_upsample(np.array(grid), (h, w)), cmap=_MAP_CMAP, alpha=0.5, vmin=0, vmax=1,
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    top = top_words
    for i, (weights, (boxes, lines)) in enumerate(zip(word_rows, layouts)):
        _draw_words(fig, height, top, words, weights, boxes, label=f"head {i}")
        top += _words_height(lines)
    return _save(fig, path)


# ----------------------------------------------------------------------------- entry points
def render_attention(meta_arch: nn.Module, image: Image.Image, caption: str, out_dir: str,
                     tokenizer: Optional[Callable] = None, transform: Optional[Callable] = None,
                     encoder: str = "student", prefix: str = "attention",
                     heads: str = "mean") -> Dict[str, Any]:
    """Render where ``meta_arch`` attends for ``image`` and ``caption``; write PNGs and JSON.

    ``meta_arch``: a COSMOS or CLIP meta-architecture, a COSMOS student or a dual encoder (what
    :func:`load_for_visualization` returns). ``tokenizer``: str → ids (L,) (default: CLIP BPE at
    the text tower's context length); ``transform``: PIL → (3, H, W) or ``{"images": ...}``
    (default: resize + center crop to the tower's size, CLIP normalisation); ``encoder``:
    ``student`` or ``teacher``; ``heads``: ``mean`` or ``all`` (adds ``<prefix>_heads.png``).

    Returns the JSON content: ``source``, ``grid``, ``patches`` (gh x gw list, min-max scaled
    to [0, 1]), ``patches_raw``, ``words`` ([{word, weight, raw, tokens}]), ``files`` (paths
    written), ...
    """
    if heads not in HEAD_MODES:
        raise CosmosError(f"heads must be one of {list(HEAD_MODES)}, got {heads!r}")
    _select(meta_arch, encoder)  # an unknown encoder fails before any work
    tokenizer = tokenizer or default_tokenizer(None, meta_arch)
    transform = transform or default_transform(None, meta_arch)
    ids = tokenizer(caption)
    ids = ids[0] if ids.dim() == 2 else ids
    if not caption_words(ids.tolist()):
        raise CosmosError(f"the caption {caption!r} has no words to show")
    pixels = _to_pixels(transform(image.convert("RGB") if image.mode != "RGB" else image))
    was_training = meta_arch.training
    meta_arch.eval()
    try:
        maps = compute_attention(meta_arch, pixels, ids, encoder)
    finally:
        meta_arch.train(was_training)
    summary = summarise(maps, heads)
    summary.update(encoder=encoder, caption=caption, image_size=list(pixels.shape[-2:]),
                   truncated=_truncated(caption, ids),
                   text_padding_masked=bool(getattr(meta_arch, "mask_text_padding", False)))
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise CosmosError(f"cannot create output directory {out_dir}: {exc.strerror}") from None
    shown = _display_image(pixels, transform)
    base = os.path.join(out_dir, prefix)
    files = {"image": _image_figure(f"{base}_image.png", shown, summary),
             "words": _words_figure(f"{base}_words.png", summary),
             "figure": _combined_figure(f"{base}.png", shown, summary)}
    if heads == "all":
        files["heads"] = _heads_figure(f"{base}_heads.png", shown, summary)
    files["json"] = f"{base}.json"
    summary["files"] = files
    atomic_write_text(files["json"], json.dumps(summary, indent=1))
    return summary


def _truncated(caption: str, ids: torch.Tensor) -> bool:
    """Whether the tokenizer cut the caption (more BPE tokens than fit before EOT)."""
    from cosmos.data.tokenizer import _bpe
    return len(_bpe().encode(caption)) > int(ids.argmax()) - 1


def default_transform(cfg: Any, model: nn.Module) -> Callable:
    """The config's evaluation image transform (``evaluation.*.transform``, then
    ``dataloader.test.image_transform``), else resize + center crop to the tower's image size
    with CLIP normalisation."""
    from cosmos.config import instantiate
    from cosmos.data.transforms import EvalCrop

    for node in _config_transforms(cfg):
        return instantiate(node)
    visual = _select(model, "student")[0].visual
    return EvalCrop(size=int(getattr(visual, "image_size", 224)))


def _config_transforms(cfg: Any) -> List[Any]:
    if cfg is None:
        return []
    found = [node.get("transform") for node in (cfg.get("evaluation") or {}).values()
             if hasattr(node, "get")]
    test = (cfg.get("dataloader") or {}).get("test")
    found.append(test.get("image_transform") if hasattr(test, "get") else None)
    return [node for node in found if node is not None]


def default_tokenizer(cfg: Any, model: nn.Module) -> Callable:
    """The config's training tokenizer (``dataloader.train.tokenizer``), else CLIP BPE; at most
    the text tower's context length."""
    from cosmos.config import instantiate
    from cosmos.data.tokenizer import ClipTokenizer

    limit = int(getattr(_select(model, "student")[0].text, "context_length", 77))
    train = ((cfg.get("dataloader") or {}).get("train") if cfg is not None else None) or {}
    node = train.get("tokenizer") if hasattr(train, "get") else None
    tokenizer = instantiate(node) if node is not None else None
    if tokenizer is None or int(getattr(tokenizer, "context_length", limit + 1)) > limit:
        tokenizer = ClipTokenizer(context_length=limit)
    return tokenizer


def find_config(checkpoint: str) -> Optional[str]:
    """The run's ``config.yaml``: two levels up from ``checkpoints/model_*.pth``, or next to the
    checkpoint (``student.pth``); None if there is none."""
    folder = os.path.dirname(os.path.abspath(checkpoint))
    candidates = [os.path.join(folder, "config.yaml")]
    if os.path.basename(folder) == "checkpoints":
        candidates.insert(0, os.path.join(os.path.dirname(folder), "config.yaml"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def _is_encoder_state(state: Dict[str, Any]) -> bool:
    """An exported dual encoder (``student.pth``): only ``visual.*``, ``text.*``, logit keys."""
    return bool(state) and all(k.startswith(("visual.", "text.", "logit_scale", "logit_bias"))
                               for k in state)


def _load_weights(module: nn.Module, path: str, state: Dict[str, Any]) -> None:
    """``load_model_weights`` with shape mismatches as one-line errors too."""
    from cosmos.engine.defaults import load_model_weights

    try:
        load_model_weights(module, path, state)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        first = lines[0] if lines else str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit the model: {first[:240]} "
                              f"({len(lines) or 1} mismatch(es))") from None


def load_for_visualization(checkpoint: str, config_file: Optional[str] = None,
                           overrides: Sequence[str] = (), arch: str = "ViT-B-16"
                           ) -> Tuple[nn.Module, Any]:
    """(model in eval mode, config or None) for any checkpoint the toolkit reads.

    * a training checkpoint (``{"model": meta-arch state}``) or a meta-arch state dict → the
      meta-architecture of the config;
    * an exported ``student.pth`` / ``teacher.pth`` (a dual encoder's state) → that dual encoder
      alone (no cross poolers: the fallback maps);
    * an official COSMOS checkpoint (``{"student", "teacher"}``) → ``nn.ModuleDict`` of the two
      :class:`CosmosStudent` of preset ``arch`` (a config, if any, only gives the transform and
      tokenizer).

    The config: ``config_file``, else the run's ``config.yaml`` (:func:`find_config`).
    """
    from cosmos.checkpoint import load_checkpoint
    from cosmos.config import instantiate
    from cosmos.engine.defaults import load_config

    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint} holds a {type(state).__name__}, not a state dict")
    config_file = config_file or find_config(checkpoint)
    cfg = load_config(config_file, overrides) if config_file else None
    if "student" in state and "teacher" in state and "model" not in state:
        from cosmos.models import from_official_cosmos
        try:
            student, teacher = from_official_cosmos(state, arch=arch)
        except CosmosError as exc:
            raise CheckpointError(f"{exc} (read {checkpoint} as an official COSMOS checkpoint of "
                                  f"preset {arch!r}; --arch picks another)") from None
        return nn.ModuleDict({"student": student, "teacher": teacher}).eval(), cfg
    if cfg is None:
        raise ConfigError(f"no config.yaml found for {checkpoint} (looked in the run directory "
                          "and next to the file); pass --config-file")
    model = instantiate(cfg.model)
    if "model" not in state and _is_encoder_state(state):
        if not hasattr(model, "encoders"):
            raise ConfigError(f"{checkpoint} is an exported encoder, but the config's model has "
                              "no encoders()")
        model = model.encoders()["student"]  # student and teacher share one architecture
    _load_weights(model, checkpoint, state)
    return model.eval(), cfg
