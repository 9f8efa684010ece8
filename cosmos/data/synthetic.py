"""Procedural multi-object scenes: the toolkit's built-in, download-free dataset.

Each scene is a low-contrast textured background, one *large* (dominant) object roughly in
the center and ``min_small..max_small`` *small* objects, each inside its own cell of a 3x3 grid
(the center cell is left to the large object, so small objects never overlap each other).
Every sample comes with a segmentation mask and captions at three granularities, which mirrors
the COSMOS evaluation tasks: full-caption retrieval, single-sentence retrieval about small
objects, zero-shot classification of the dominant shape and zero-shot segmentation.

Caption format (``sample["captions"]``):

* ``"long"``: ``len(objects) + 1`` sentences, always in this order: one about the large object,
  one per small object (in ``objects`` order), and one final sentence about the background.
  Every sentence ends with ``'.'`` and contains no other ``'.'``, so
  ``" ".join(long).split(".")`` recovers the sentences exactly.
* ``"short"``: one sentence naming the dominant object and the number of small shapes.
* ``"raw"``: a short alt-text such as ``"red circle"``.

Sample ``i`` of split ``s`` is generated from ``np.random.default_rng([seed, crc32(s), i])``,
so it is identical across processes and runs, and splits are disjoint random streams.
"""
from __future__ import annotations

import operator
import re
import zlib
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cosmos.registry import DATASETS

__all__ = [
    "SHAPES", "COLORS", "BACKGROUNDS", "PATTERNS", "SEGMENTATION_CLASSES", "SMALL_POSITIONS",
    "SyntheticScenes", "class_names", "prompt_templates", "describe_object", "long_caption",
]

SHAPES: Tuple[str, ...] = (
    "circle", "square", "triangle", "diamond", "cross", "ring", "star", "hexagon",
)
COLORS: Dict[str, Tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (40, 190, 60),
    "blue": (45, 95, 245),
    "yellow": (245, 225, 40),
    "purple": (160, 60, 215),
    "orange": (255, 140, 20),
    "white": (245, 245, 245),
    "cyan": (40, 225, 235),
}
# Muted background base colours: dark enough that every object colour stands out.
BACKGROUNDS: Dict[str, Tuple[int, int, int]] = {
    "gray": (92, 92, 92),
    "brown": (98, 74, 56),
    "olive": (84, 88, 52),
    "navy": (42, 48, 88),
    "maroon": (88, 44, 54),
    "teal": (40, 82, 82),
    "charcoal": (50, 50, 56),
    "slate": (70, 80, 96),
}
PATTERNS: Tuple[str, ...] = ("stripes", "checker", "noise", "gradient")
SEGMENTATION_CLASSES: Tuple[str, ...] = ("background",) + SHAPES

# Geometry, as fractions of the image side.
_LARGE_DIAMETER = (0.50, 0.65)
_SMALL_DIAMETER = (0.16, 0.25)
_LARGE_JITTER = 0.06
_ROTATION_DEG = 12.0
_COLOR_JITTER = 8
_GRID_CELLS = tuple((r, c) for r in range(3) for c in range(3) if (r, c) != (1, 1))
_POSITION_NAMES = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "center", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
# Where small objects can be: the 3x3 grid cells in words, the center cell excluded.
SMALL_POSITIONS: Tuple[str, ...] = tuple(_POSITION_NAMES[cell] for cell in _GRID_CELLS)
_POSITION_PHRASES: Dict[str, Tuple[str, ...]] = {
    "top left": ("in the top left corner", "at the top left", "in the upper left"),
    "top": ("near the top", "at the top", "in the upper middle"),
    "top right": ("in the top right corner", "at the top right", "in the upper right"),
    "left": ("on the left", "at the left side", "along the left edge"),
    "center": ("in the center", "in the middle"),
    "right": ("on the right", "at the right side", "along the right edge"),
    "bottom left": ("in the bottom left corner", "near the bottom left", "in the lower left"),
    "bottom": ("near the bottom", "at the bottom", "in the lower middle"),
    "bottom right": ("in the bottom right corner", "near the bottom right",
                     "in the lower right"),
}
_SIZE_WORDS = {"large": ("large", "big", "huge"), "small": ("small", "tiny", "little")}
_LARGE_TEMPLATES = (
    "{A} {size} {color} {shape} fills the center of the image.",
    "In the middle of the picture there is {a} {size} {color} {shape}.",
    "The image is dominated by {a} {size} {color} {shape}.",
    "{A} {size} {color} {shape} sits {pos}.",
    "There is {a} {size} {color} {shape} {pos}.",
)
_SMALL_TEMPLATES = (
    "There is {a} {size} {color} {shape} {pos}.",
    "{Pos} sits {a} {size} {color} {shape}.",
    "{A} {size} {color} {shape} appears {pos}.",
    "{Pos}, you can see {a} {size} {color} {shape}.",
    "{A} {size} {color} {shape} is located {pos}.",
)
_BACKGROUND_TEMPLATES = (
    "The background is {a} {pattern} {bg} surface.",
    "Everything rests on {a} {pattern} {bg} background.",
    "Behind it all is {a} {pattern} {bg} backdrop.",
)
_PATTERN_WORDS = {
    "stripes": ("striped", "lined"),
    "checker": ("checkered", "tiled"),
    "noise": ("speckled", "noisy"),
    "gradient": ("softly shaded", "gradient"),
}
_SHORT_TEMPLATES = (
    "{A} {color} {shape} with {n} small {shapes}.",
    "{A} large {color} {shape} and {n} smaller {objects}.",
    "{N} small {shapes} around {a} big {color} {shape}.",
)
_SHORT_TEMPLATES_ALONE = (
    "{A} {color} {shape} on its own.",
    "{A} single large {color} {shape}.",
)
_RAW_TEMPLATES = ("{color} {shape}", "{color} {shape} image", "big {color} {shape}",
                  "{shape} {color}")
_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight")
_PROMPT_TEMPLATES = (
    "a photo of a {}.",
    "a {} shape.",
    "an image of a large {}.",
    "a picture with a big {} in the middle.",
    "a drawing of a {}.",
)


def class_names() -> List[str]:
    """Zero-shot class names: the shape names, indexed like ``sample["label"]``."""
    return list(SHAPES)


def prompt_templates() -> List[str]:
    """Zero-shot prompt templates with one ``{}`` slot for a class name."""
    return list(_PROMPT_TEMPLATES)


# ----------------------------------------------------------------------------------- words


_ARTICLE_RE = re.compile(r"\b(a|A|an|An) (\w+)")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(template: str, **words: str) -> str:
    """Fill ``template``; ``{a}``/``{A}`` become the right article for the next word and
    capitalised field names (``{Pos}``) give capitalised values."""
    fields = dict(words, a="a", A="A")
    fields.update({_capitalize(k): _capitalize(v) for k, v in words.items()})
    return _ARTICLE_RE.sub(_fix_article, template.format(**fields))


def _fix_article(match: "re.Match[str]") -> str:
    article = _article(match.group(2))
    if match.group(1)[0] == "A":
        article = _capitalize(article)
    return f"{article} {match.group(2)}"


def _draw_object_wording(obj: Dict[str, Any], rng: np.random.Generator) -> Dict[str, int]:
    """The random word choices of one object sentence, as indices (size word, position phrase,
    template); drawn in this order, one ``rng.integers`` each."""
    position = obj.get("position", _default_position(obj))
    return {"size": int(rng.integers(len(_SIZE_WORDS[obj["size"]]))),
            "position": int(rng.integers(len(_POSITION_PHRASES[position]))),
            "template": int(rng.integers(len(_object_templates(obj))))}


def _default_position(obj: Dict[str, Any]) -> str:
    return "center" if obj["size"] == "large" else "top left"


def _object_templates(obj: Dict[str, Any]) -> Tuple[str, ...]:
    return _LARGE_TEMPLATES if obj["size"] == "large" else _SMALL_TEMPLATES


def _pick(options: Sequence[str], index: int, what: str) -> str:
    if not 0 <= index < len(options):
        raise ValueError(f"{what} wording index {index} outside [0, {len(options)})")
    return options[index]


def _compose_object(obj: Dict[str, Any], wording: Dict[str, int]) -> str:
    position = obj.get("position", _default_position(obj))
    return _fill(_pick(_object_templates(obj), wording["template"], "template"),
                 size=_pick(_SIZE_WORDS[obj["size"]], wording["size"], "size"),
                 color=obj["color"], shape=obj["shape"],
                 pos=_pick(_POSITION_PHRASES[position], wording["position"], "position"))


def describe_object(obj: Dict[str, Any], rng: np.random.Generator) -> str:
    """One sentence about ``obj`` (keys ``shape``, ``color``, ``size``, optional ``position``).

    The sentence names the object's colour and shape, ends with '.' and has no other '.'.
    """
    return _compose_object(obj, _draw_object_wording(obj, rng))


def _draw_background_wording(pattern: str, rng: np.random.Generator) -> Dict[str, int]:
    return {"pattern": int(rng.integers(len(_PATTERN_WORDS[pattern]))),
            "template": int(rng.integers(len(_BACKGROUND_TEMPLATES)))}


def _compose_background(background: Dict[str, str], wording: Dict[str, int]) -> str:
    pattern = background["pattern"]
    return _fill(_pick(_BACKGROUND_TEMPLATES, wording["template"], "template"),
                 pattern=_pick(_PATTERN_WORDS[pattern], wording["pattern"], "pattern"),
                 bg=background["color"])


def long_caption(objects: Sequence[Dict[str, Any]], background: Dict[str, str],
                 wording: Dict[str, Any]) -> List[str]:
    """The ``"long"`` sentences of a scene from its attributes and word choices.

    ``objects``, ``background`` (``{"color", "pattern"}``) and ``wording`` as in a
    :class:`SyntheticScenes` item: ``long_caption(item["objects"], item["background"],
    item["wording"]) == item["captions"]["long"]``. With one attribute changed (a colour,
    shape, position or background colour name) the sentences keep their templates and word
    choices; only that attribute's words change.
    """
    if len(wording["objects"]) != len(objects):
        raise ValueError(f"{len(wording['objects'])} object wordings for {len(objects)} objects")
    sentences = [_compose_object(o, w) for o, w in zip(objects, wording["objects"])]
    sentences.append(_compose_background(background, wording["background"]))
    return sentences


def _short_caption(large: Dict[str, Any], num_small: int, rng: np.random.Generator) -> str:
    if num_small == 0:
        return _fill(_choice(rng, _SHORT_TEMPLATES_ALONE), color=large["color"],
                     shape=large["shape"])
    plural = num_small != 1
    return _fill(_choice(rng, _SHORT_TEMPLATES), color=large["color"], shape=large["shape"],
                 n=_NUMBER_WORDS[num_small], shapes="shapes" if plural else "shape",
                 objects="objects" if plural else "object")


def _raw_caption(large: Dict[str, Any], rng: np.random.Generator) -> str:
    return _choice(rng, _RAW_TEMPLATES).format(color=large["color"], shape=large["shape"])


def _make_captions(objects: List[Dict[str, Any]], background: Dict[str, str],
                   rng: np.random.Generator) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(captions, wording): the three caption granularities and the word choices of ``long``."""
    wording = {"objects": [_draw_object_wording(o, rng) for o in objects],
               "background": _draw_background_wording(background["pattern"], rng)}
    captions = {
        "long": long_caption(objects, background, wording),
        "short": [_short_caption(objects[0], len(objects) - 1, rng)],
        "raw": _raw_caption(objects[0], rng),
    }
    return captions, wording


# ------------------------------------------------------------------------ shape geometry
# Signed distance functions in object units (radius 1 = half the nominal diameter),
# negative inside. Inputs u (right) and v (down) are arrays of the same shape.

_SQRT3_2 = float(np.sqrt(3.0) / 2.0)


def _sd_circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) - 1.0


def _sd_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) - 0.82


def _sd_triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius, shift = 1.15, 0.2875  # circumradius; centroid shift so the box is centered
    w = v - shift
    edges = np.maximum(w, np.maximum(_SQRT3_2 * u - 0.5 * w, -_SQRT3_2 * u - 0.5 * w))
    return edges - 0.5 * radius


def _sd_diamond(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = 0.72, 1.0  # half width, half height: a rhombus, never a rotated square
    return (np.abs(u) / a + np.abs(v) / b - 1.0) * (a * b / np.hypot(a, b))


def _sd_cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av, arm, half = np.abs(u), np.abs(v), 0.95, 0.32
    return np.minimum(np.maximum(au - arm, av - half), np.maximum(au - half, av - arm))


def _sd_ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(u, v) - 0.75) - 0.25


def _sd_star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inner, sector = 0.48, 2.0 * np.pi / 5.0
    w = v - 0.09  # the 5 tips span [-1, 0.81]: shift to center the box
    theta = np.arctan2(u, -w)
    t = np.abs(np.mod(theta + sector / 2.0, sector) - sector / 2.0)
    rho = np.hypot(u, w)
    a, b = rho * np.cos(t), rho * np.sin(t)
    nx, ny = inner * np.sin(sector / 2.0), 1.0 - inner * np.cos(sector / 2.0)
    norm = np.hypot(nx, ny)
    return (nx * (a - 1.0) + ny * b) / norm


def _sd_hexagon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return np.maximum(au, 0.5 * au + _SQRT3_2 * av) - _SQRT3_2


_SDF: Dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "circle": _sd_circle, "square": _sd_square, "triangle": _sd_triangle,
    "diamond": _sd_diamond, "cross": _sd_cross, "ring": _sd_ring, "star": _sd_star,
    "hexagon": _sd_hexagon,
}


# --------------------------------------------------------------------------- rendering


def _render_background(size: int, rng: np.random.Generator) -> Tuple[np.ndarray, str, str]:
    """Return a float32 (size, size, 3) low-contrast textured background, its colour name and
    pattern name."""
    bg_name = _choice(rng, tuple(BACKGROUNDS))
    pattern = _choice(rng, PATTERNS)
    base = np.asarray(BACKGROUNDS[bg_name], np.float32) + rng.uniform(-10, 10, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    amp = float(rng.uniform(8.0, 14.0))
    if pattern == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(0.12, 0.25)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        tex = amp * np.tanh(2.5 * np.sin(2 * np.pi * phase + rng.uniform(0, 2 * np.pi)))
    elif pattern == "checker":
        cells = int(rng.integers(4, 9))
        tex = amp * (2.0 * ((np.floor(xx * cells) + np.floor(yy * cells)) % 2) - 1.0)
    elif pattern == "noise":
        tex = rng.normal(0.0, amp * 0.6, (size, size)).astype(np.float32)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        tex = 2.2 * amp * ((xx - 0.5) * np.cos(angle) + (yy - 0.5) * np.sin(angle))
    image = base[None, None, :] + tex[..., None]
    return image.astype(np.float32), bg_name, pattern


def _draw_object(image: np.ndarray, mask: np.ndarray, instances: np.ndarray,
                 obj: Dict[str, Any], center: Tuple[float, float], radius: float, angle: float,
                 rgb: np.ndarray) -> None:
    """Alpha-blend one anti-aliased object into ``image`` (H, W, 3) in place, write its class id
    into ``mask`` (H, W), its instance number (objects drawn so far + 1) into ``instances``
    (H, W) and its tight pixel box ``(x0, y0, x1, y1)`` (exclusive) into ``obj``."""
    size = image.shape[0]
    cx, cy = center
    reach = radius * 1.5 + 2.0
    x0, x1 = max(0, int(cx - reach)), min(size, int(np.ceil(cx + reach)) + 1)
    y0, y1 = max(0, int(cy - reach)), min(size, int(np.ceil(cy + reach)) + 1)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xs + 0.5 - cx) / radius, (ys + 0.5 - cy) / radius
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    dist_px = _SDF[obj["shape"]](u, v) * radius
    alpha = np.clip(0.5 - dist_px, 0.0, 1.0)[..., None]
    window = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = window * (1.0 - alpha) + rgb[None, None, :] * alpha
    inside = dist_px <= 0.0
    mask[y0:y1, x0:x1][inside] = 1 + SHAPES.index(obj["shape"])
    instances[y0:y1, x0:x1][inside] = int(instances.max()) + 1
    rows, cols = np.nonzero(inside)
    if rows.size:
        obj["bbox"] = (x0 + int(cols.min()), y0 + int(rows.min()),
                       x0 + int(cols.max()) + 1, y0 + int(rows.max()) + 1)
    else:
        obj["bbox"] = (int(cx), int(cy), int(cx) + 1, int(cy) + 1)


def _object_rgb(color: str, rng: np.random.Generator) -> np.ndarray:
    """Colour with brightness jitter and a little per-channel jitter (hue stays nameable)."""
    gain = rng.uniform(0.85, 1.08)
    jitter = rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, 3)
    rgb = np.asarray(COLORS[color], np.float32) * gain + jitter
    return np.clip(rgb, 0, 255).astype(np.float32)


def _sample_small_specs(large: Dict[str, Any], count: int,
                        rng: np.random.Generator) -> List[Tuple[str, str]]:
    """(shape, colour) pairs: colours differ from the large object's, pairs are unique."""
    colors = [c for c in COLORS if c != large["color"]]
    pairs = [(s, c) for s in SHAPES for c in colors]
    picks = rng.choice(len(pairs), size=count, replace=False)
    return [pairs[int(k)] for k in picks]


def _small_center(cell: Tuple[int, int], radius: float, size: int,
                  rng: np.random.Generator) -> Tuple[float, float]:
    """A center that keeps a disc of ``radius`` inside grid ``cell`` (row, col) when possible."""
    lo_y, lo_x = cell[0] * size / 3.0, cell[1] * size / 3.0
    span = size / 3.0
    slack = max(0.0, span / 2.0 - radius * 1.05)
    cx = lo_x + span / 2.0 + rng.uniform(-slack, slack)
    cy = lo_y + span / 2.0 + rng.uniform(-slack, slack)
    return float(cx), float(cy)


def _generate_scene(size: int, num_small_range: Tuple[int, int],
                    rng: np.random.Generator) -> Dict[str, Any]:
    """Render one scene: image (H, W, 3) uint8, mask and instances (H, W) int64, objects,
    background colour name and pattern."""
    image, bg_name, pattern = _render_background(size, rng)
    mask = np.zeros((size, size), np.int64)
    instances = np.zeros((size, size), np.int64)
    large = {"shape": _choice(rng, SHAPES), "color": _choice(rng, tuple(COLORS)),
             "size": "large", "position": "center"}
    center = tuple(size * (0.5 + rng.uniform(-_LARGE_JITTER, _LARGE_JITTER, 2)))
    radius = size * rng.uniform(*_LARGE_DIAMETER) / 2.0
    angle = np.deg2rad(rng.uniform(-_ROTATION_DEG, _ROTATION_DEG))
    _draw_object(image, mask, instances, large, center, radius, angle,
                 _object_rgb(large["color"], rng))
    objects = [large]
    count = int(rng.integers(num_small_range[0], num_small_range[1] + 1))
    cells = rng.choice(len(_GRID_CELLS), size=count, replace=False)
    for (shape, color), k in zip(_sample_small_specs(large, count, rng), cells):
        cell = _GRID_CELLS[int(k)]
        small = {"shape": shape, "color": color, "size": "small",
                 "position": _POSITION_NAMES[cell]}
        radius = size * rng.uniform(*_SMALL_DIAMETER) / 2.0
        angle = np.deg2rad(rng.uniform(-_ROTATION_DEG, _ROTATION_DEG))
        _draw_object(image, mask, instances, small, _small_center(cell, radius, size, rng),
                     radius, angle, _object_rgb(color, rng))
        objects.append(small)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return {"image": pixels, "mask": mask, "instances": instances, "objects": objects,
            "background": bg_name, "pattern": pattern}


# ----------------------------------------------------------------------------- dataset


@DATASETS.register(name="synthetic_scenes")
class SyntheticScenes(Dataset):
    """Deterministic procedural scenes of one large and a few small coloured shapes.

    Each item is a dict:

    * ``image``: ``PIL.Image`` RGB, ``image_size`` x ``image_size``.
    * ``mask``: ``LongTensor`` (H, W); 0 background, else ``1 + SHAPES.index(shape)`` of the
      object visible at that pixel (see :data:`SEGMENTATION_CLASSES`).
    * ``instances``: ``LongTensor`` (H, W); 0 background, else ``1 + i`` for ``objects[i]``
      visible at that pixel (1 = the dominant object; small objects are drawn over it).
    * ``captions``: ``{"long": [str, ...], "short": [str], "raw": str}``; ``long`` has one
      sentence per object (dominant first) plus one final background sentence.
    * ``objects``: ``[{"shape", "color", "size": "large"|"small", "position", "bbox"}]``,
      dominant first; ``bbox = (x0, y0, x1, y1)`` in pixels, exclusive upper bounds, of the
      whole (unoccluded) object; ``position`` is its 3x3 grid cell in words.
    * ``background``: ``{"color": name in BACKGROUNDS, "pattern": name in PATTERNS}``.
    * ``wording``: the word choices of ``captions["long"]`` (``{"objects": [{"size",
      "position", "template"}], "background": {"pattern", "template"}}``, indices), so that
      :func:`long_caption` rebuilds those sentences, or their variants with one attribute
      changed in the same words.
    * ``label``: ``SHAPES.index`` of the dominant object's shape.
    * ``key``: ``f"{split}-{index:08d}"``.
    """

    def __init__(self, num_samples: int = 2000, image_size: int = 64, split: str = "train",
                 seed: int = 0, min_small: int = 1, max_small: int = 3) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {image_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not 0 <= min_small <= max_small <= len(_GRID_CELLS):
            raise ValueError(f"need 0 <= min_small <= max_small <= {len(_GRID_CELLS)}, "
                             f"got min_small={min_small}, max_small={max_small}")
        self.num_samples = int(num_samples)
        self.image_size = int(image_size)
        self.split = str(split)
        self.seed = int(seed)
        self.min_small = int(min_small)
        self.max_small = int(max_small)
        self._split_id = zlib.crc32(self.split.encode("utf-8"))

    def __len__(self) -> int:
        return self.num_samples

    def _index(self, index: int) -> int:
        i = operator.index(index)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return i

    def rng(self, index: int) -> np.random.Generator:
        """The generator that sample ``index`` is drawn from."""
        return np.random.default_rng([self.seed, self._split_id, self._index(index)])

    def __getitem__(self, index: int) -> Dict[str, Any]:
        i = self._index(index)
        rng = self.rng(i)
        scene = _generate_scene(self.image_size, (self.min_small, self.max_small), rng)
        objects = scene["objects"]
        background = {"color": scene["background"], "pattern": scene["pattern"]}
        captions, wording = _make_captions(objects, background, rng)
        return {
            "image": Image.fromarray(scene["image"]),
            "mask": torch.from_numpy(scene["mask"]),
            "instances": torch.from_numpy(scene["instances"]),
            "captions": captions,
            "objects": objects,
            "background": background,
            "wording": wording,
            "label": SHAPES.index(objects[0]["shape"]),
            "key": f"{self.split}-{i:08d}",
        }

    @staticmethod
    def class_names() -> List[str]:
        """Shape names, indexed like ``label``."""
        return class_names()

    @staticmethod
    def prompt_templates() -> List[str]:
        """Zero-shot prompt templates with one ``{}`` slot."""
        return prompt_templates()

    @staticmethod
    def segmentation_classes() -> List[str]:
        """Mask class names: ``"background"`` then the shapes."""
        return list(SEGMENTATION_CLASSES)

    def __repr__(self) -> str:
        return (f"SyntheticScenes(num_samples={self.num_samples}, "
                f"image_size={self.image_size}, split={self.split!r}, seed={self.seed}, "
                f"small={self.min_small}..{self.max_small})")
