"""A run report: one markdown page that links a run's (or several runs') curves, metric tables,
cross-attention maps of held-out scenes and segmentation overlays.

    write_report("runs/demo", {"cosmos": "runs/demo/cosmos", "clip": "runs/demo/clip"})

Writes ``<out>/report.md`` and the pictures it shows under ``<out>/report/`` (per-run curves go
to each run's ``plots/``). Everything a run lacks (no cross-attention, no segmentation
evaluator, no evaluation yet) is left out with a line that says so.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from cosmos.config import instantiate
from cosmos.engine.inference import load_model_for_inference
from cosmos.utils.atomic import atomic_write_text
from cosmos.utils.errors import CosmosError
from cosmos.visualization.attention import default_tokenizer, default_transform, render_attention
from cosmos.visualization.curves import compare_runs, plot_curves
from cosmos.visualization.segmentation import segmentation_samples

logger = logging.getLogger(__name__)


def _rel(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def _image(path: str, start: str, alt: str) -> str:
    return f"![{alt}]({_rel(path, start)})"


# Metric groups shown first in the tables (after the encoder, e.g. ``student/``): the
# fine-grained synthetic evaluators, then everything else in name order.
LEADING_METRICS = ("hard_negatives/", "object_retrieval/object/", "object_retrieval/shape_color/",
                   "segmentation/small/", "segmentation/dominant/", "segmentation/background/")
CHANCE_SUFFIX = "_chance"


def metric_order(key: str) -> tuple:
    """Sort key: leading groups first (in :data:`LEADING_METRICS` order), then by name."""
    rest = key.split("/", 1)[1] if "/" in key else key
    rank = next((i for i, prefix in enumerate(LEADING_METRICS) if rest.startswith(prefix)),
                len(LEADING_METRICS))
    return rank, key.split("/", 1)[0] if "/" in key else "", rest


def results_table(runs: Mapping[str, str], keys: Optional[Sequence[str]] = None) -> str:
    """Markdown table of the runs' final ``eval/results.json``: one row per metric, the
    fine-grained ones first, and a ``chance`` column where the evaluator reports one
    (``<metric>_chance``; the same for every run evaluated on the same scenes)."""
    results: Dict[str, Dict[str, float]] = {}
    for label, run_dir in runs.items():
        path = os.path.join(run_dir, "eval", "results.json")
        if os.path.isfile(path):
            with open(path) as f:
                results[label] = {k: v for k, v in json.load(f).items() if k != "iter"}
    if not results:
        return "_No final evaluation yet._"
    if keys is None:
        keys = sorted({k for r in results.values() for k in r
                       if "/IoU/" not in k and not k.endswith(CHANCE_SUFFIX)}, key=metric_order)
    chance = {k: next((r[k + CHANCE_SUFFIX] for r in results.values()
                       if k + CHANCE_SUFFIX in r), None) for k in keys}
    with_chance = any(v is not None for v in chance.values())
    header = list(results) + (["chance"] if with_chance else [])
    lines = ["| metric | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for key in keys:
        cells = [f"{r[key]:.1f}" if key in r else "" for r in results.values()]
        if with_chance:
            cells.append(f"{chance[key]:.1f}" if chance[key] is not None else "")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held_out_scenes(cfg: Any, count: int) -> List[Dict[str, Any]]:
    """The first ``count`` scenes of the run's synthetic evaluation set (image, full caption)."""
    evaluation = (cfg.get("evaluation") or {}) if cfg is not None else {}
    node = next((n for n in evaluation.values() if n is not None and "dataset" in n
                 and "synthetic" in str(n.dataset.get("_target_", "")).lower()), None)
    if node is None:
        return []
    dataset = instantiate(node.dataset)
    scenes = []
    for i in range(min(count, len(dataset))):
        item = dataset[i]
        scenes.append({"key": item["key"], "image": item["image"],
                       "caption": " ".join(item["captions"]["long"])})
    return scenes


def attention_section(label: str, run_dir: str, out_dir: str, report_dir: str,
                      count: int) -> List[str]:
    loaded = load_model_for_inference(run_dir)  # its latest checkpoint
    model, cfg = loaded.model, loaded.cfg
    scenes = held_out_scenes(cfg, count)
    if not scenes:
        return [f"_{label}: no synthetic evaluation scenes in its config; no attention maps._", ""]
    lines = []
    for scene in scenes:
        summary = render_attention(model, scene["image"], scene["caption"],
                                   os.path.join(out_dir, "attention", label), prefix=scene["key"],
                                   tokenizer=default_tokenizer(cfg, model),
                                   transform=default_transform(cfg, model))
        combined = summary["files"]["figure"]
        lines += [f"**{label}, {scene['key']}** ({summary['source']}): "
                  f"\"{scene['caption'][:160]}{'…' if len(scene['caption']) > 160 else ''}\"", "",
                  _image(combined, report_dir, f"{label} attention {scene['key']}"), ""]
    return lines


def segmentation_section(label: str, run_dir: str, out_dir: str, report_dir: str,
                         count: int) -> List[str]:
    loaded = load_model_for_inference(run_dir)  # its latest checkpoint
    model, cfg = loaded.model, loaded.cfg
    evaluation = (cfg.get("evaluation") or {}) if cfg is not None else {}
    node = next((n for n in evaluation.values() if n is not None and
                 "segmentation" in str(n.get("_target_", "")).lower()), None)
    if node is None:
        return [f"_{label}: no segmentation evaluator in its config; no overlays._", ""]
    encoder = model.encoders()[loaded.which]
    paths = segmentation_samples(encoder, node, count, os.path.join(out_dir, "segmentation", label))
    return [_image(p, report_dir, f"{label} segmentation {i}") for i, p in enumerate(paths)] + [""]


def write_report(out_dir: str, runs: Mapping[str, str], title: str = "Run report",
                 attention_scenes: int = 3, segmentation_images: int = 3,
                 intro: Sequence[str] = ()) -> str:
    """Write ``<out_dir>/report.md`` for ``runs`` ({label: run directory}); returns its path."""
    if not runs:
        raise CosmosError("a report needs at least one run directory")
    pictures = os.path.join(out_dir, "report")
    os.makedirs(pictures, exist_ok=True)
    lines = [f"# {title}", "", *intro, ""] if intro else [f"# {title}", ""]
    lines += ["## Final metrics", "",
              "Percent, held-out data, from each run's `eval/results.json`. First the "
              "fine-grained metrics of the synthetic scenes (docs/evaluation.md): "
              "`hard_negatives/<kind>`, the true caption chosen over one with one attribute of "
              "one object changed; `object_retrieval/*`, small-object sentences retrieving every "
              "scene that holds the object (`positives`: correct scenes per query, a count); "
              "`segmentation/{small,dominant,background}/*`, segmentation scored per object "
              "group. `chance`: the same metric for a random ranking or choice.",
              "", results_table(runs), ""]
    lines += ["## Training curves", ""]
    if len(runs) > 1:
        compare = compare_runs(dict(runs), os.path.join(pictures, "compare_losses.png"))
        lines += [_image(compare, out_dir, "loss curves of all runs"), ""]
    for label, run_dir in runs.items():
        plots = plot_curves(run_dir)
        links = [f"- [{os.path.basename(p)}]({_rel(p, out_dir)})" for p in plots]
        lines += [f"### {label}", "", *links, ""]
        losses = next((p for p in plots if p.endswith("losses.png")), None)
        if losses:
            lines += [_image(losses, out_dir, f"{label} losses"), ""]
    lines += ["## Cross-attention on held-out scenes", "",
              "Where the text→image cross-attention looks among the image patches (heat map) and "
              "where the image→text cross-attention looks among the caption's words (shading); "
              "both averaged over heads and scaled to [0, 1].", ""]
    for label, run_dir in runs.items():
        lines += attention_section(label, run_dir, pictures, out_dir, attention_scenes)
    lines += ["## Zero-shot segmentation samples", "",
              "Image, prediction and ground truth for the first held-out scenes.", ""]
    for label, run_dir in runs.items():
        lines += [f"### {label}", ""]
        lines += segmentation_section(label, run_dir, pictures, out_dir, segmentation_images)
    lines += ["## Runs", ""] + [f"- {label}: `{os.path.abspath(d)}` (log: "
                                f"[{label}/log.txt]({_rel(os.path.join(d, 'log.txt'), out_dir)}))"
                                for label, d in runs.items()] + [""]
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines))
    logger.info("wrote %s", path)
    return path
