"""cosmos.visualization: training curves from metrics.jsonl (and the TensorBoard scalars beside
it), the plot_curves tool, and zero-shot segmentation overlays."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos.config import LazyCall as L
from cosmos.data import ClipTokenizer
from cosmos.data.synthetic import SyntheticScenes
from cosmos.evaluation.segmentation import ConfusionMatrix, SyntheticSegmentationEvaluator
from cosmos.models.presets import build_dual_encoder
from cosmos.utils.errors import CosmosError, DataError
from cosmos.visualization.curves import (compare_runs, eval_groups, figure_size_px, load_run,
                                         plot_curves, read_metrics)
from cosmos.visualization.segmentation import (colorize, image_scores, palette, render_overlay,
                                               segmentation_predictions, segmentation_samples)
from tests.helpers import REPO, run_train

COSMOS_CONFIG = os.path.join(REPO, "configs", "cosmos", "cosmos_tiny_synthetic.py")
TINY = ["model.student.encoder.visual.width=32", "model.student.encoder.visual.layers=1",
        "model.student.encoder.text.width=32", "model.student.encoder.text.layers=1",
        "evaluation.synthetic.dataset.num_samples=6",
        "evaluation.segmentation.dataset.num_samples=4", "dataloader.train.num_workers=0"]
TEMPLATES = ["a photo of a {}."]


def _png(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _assert_not_blank(pixels: np.ndarray) -> None:
    assert pixels.std() > 15, "the figure is (nearly) one colour"


@pytest.fixture(scope="module")
def cosmos_run(tmp_path_factory, synthetic_shards) -> str:
    """A 4-step tiny COSMOS run, evaluated at steps 2 and 4, metrics written every step."""
    out = str(tmp_path_factory.mktemp("viz_cosmos_run"))
    res = run_train(["--config-file", COSMOS_CONFIG, f"train.output_dir={out}", "train.max_iter=4",
                     "train.eval_period=2", "train.log_period=1",
                     f"dataloader.train.urls={synthetic_shards}", "dataloader.train.batch_size=2",
                     *TINY])
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def _jsonl_rows(run: str):
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _tensorboard_scalars(run: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(os.path.join(run, "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


# -------------------------------------------------------------------------- metrics reading
def test_read_metrics_skips_torn_lines_merges_steps_and_drops_rerun_steps(tmp_path) -> None:
    lines = [
        '{"iter": 1, "loss": 3.0, "lr": 0.1, "note": "text", "flag": true}',
        "not json at all",
        '[1, 2]',
        '{"loss": 9.0}',
        '{"iter": 2, "loss": 2.5, "lr": 0.2}',
        '{"iter": 2, "eval/student/mIoU": 10.0}',             # a second row of step 2 merges
        '{"iter": 3, "loss": 2.0, "lr": 0.3, "eval/student/mIoU": 12.0}',
        '{"iter": 4, "loss": 1.8, "lr": 0.4}',
        '{"iter": 3, "loss": 2.1, "lr": 0.31, "pairs_per_s": 5}',  # resumed after step 2
        '{"iter": 4, "loss": 1.5, "lr": 0.4, "pairs_per_s": 6.5}',
        '{"iter": 5, "loss": 1.4, "lr": 0.5, "pair',           # cut short by a kill
    ]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(lines))
    series = read_metrics(str(path))
    assert series == {
        "eval/student/mIoU": ([2], [10.0]),          # step 3's value was logged before the resume
        "loss": ([1, 2, 3, 4], [3.0, 2.5, 2.1, 1.5]),
        "lr": ([1, 2, 3, 4], [0.1, 0.2, 0.31, 0.4]),
        "pairs_per_s": ([3, 4], [5.0, 6.5]),
    }
    assert eval_groups(series) == {"metrics": [("eval/student/mIoU", "student", "mIoU")]}
    with pytest.raises(CosmosError, match="no such run"):
        plot_curves(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "metrics.jsonl").write_text("{broken\n")
    with pytest.raises(CosmosError, match="no metric rows"):
        plot_curves(str(tmp_path / "empty"))


@pytest.mark.slow
def test_curve_data_is_the_runs_metrics_plus_the_final_evaluation(cosmos_run) -> None:
    rows = _jsonl_rows(cosmos_run)
    expected = {}
    for row in rows:
        for key, value in row.items():
            if key != "iter":
                steps, values = expected.setdefault(key, ([], []))
                steps.append(row["iter"])
                values.append(value)
    assert read_metrics(os.path.join(cosmos_run, "metrics.jsonl")) == expected
    for key in ("loss", "clip_loss", "distill_loss", "logit_scale", "distill_logit_scale", "lr",
                "ema_momentum", "pairs_per_s", "eval/teacher/segmentation/mIoU"):
        assert key in expected, key
    _, series = load_run(cosmos_run)
    final = json.load(open(os.path.join(cosmos_run, "eval", "results.json")))
    steps, values = series["eval/teacher/segmentation/mIoU"]
    assert steps == [2, 4] and values[-1] == final["teacher/segmentation/mIoU"]


# -------------------------------------------------------------------------------- figures
@pytest.mark.slow
def test_plot_curves_writes_each_family_at_its_size(cosmos_run, tmp_path) -> None:
    paths = plot_curves(cosmos_run)
    names = [os.path.basename(p) for p in paths]
    assert names == ["losses.png", "temperatures.png", "schedules.png", "throughput.png",
                     "eval.png"]
    assert all(os.path.dirname(p) == os.path.join(cosmos_run, "plots") for p in paths)
    panels = {"losses.png": 3, "temperatures.png": 1, "schedules.png": 2, "throughput.png": 1,
              "eval.png": 11}  # eval: hard_negatives, object_retrieval/{object,shape_color},
    # segmentation, segmentation/{IoU,small,dominant,background}, synthetic/{3 groups}
    assert figure_size_px(3) == (1200, 300) and figure_size_px(5) == (1200, 600)
    for path in paths:
        pixels = _png(path)
        w, h = figure_size_px(panels[os.path.basename(path)])
        assert pixels.shape == (h, w, 3), path
        _assert_not_blank(pixels)
    assert not [f for f in os.listdir(os.path.join(cosmos_run, "plots")) if f.endswith(".tmp")]

    # a CLIP-like run without EMA, distillation or evaluation: only its own families
    clip = tmp_path / "clip_run"
    clip.mkdir()
    (clip / "metrics.jsonl").write_text("".join(
        json.dumps({"iter": i, "loss": 3.0 / i, "clip_loss": 3.0 / i, "logit_scale": 14 + i,
                    "lr": 1e-3 * i}) + "\n" for i in range(1, 30)))
    paths = plot_curves(str(clip), out_dir=str(tmp_path / "clip_plots"))
    assert [os.path.basename(p) for p in paths] == ["losses.png", "temperatures.png",
                                                    "schedules.png"]
    assert _png(paths[2]).shape == (300, 400, 3)  # lr alone

    out = compare_runs({"cosmos": cosmos_run, "clip": str(clip)}, str(tmp_path / "cmp.png"))
    pixels = _png(out)
    assert pixels.shape == (300, 1200, 3)  # loss, clip_loss, distill_loss
    _assert_not_blank(pixels)


def test_plot_curves_tool(tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("plot_curves_tool",
                                                  os.path.join(REPO, "tools", "plot_curves.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    runs = [tmp_path / "a" / "run", tmp_path / "b" / "run"]  # same name: labels get the parent
    for k, run in enumerate(runs):
        run.mkdir(parents=True)
        rows = [{"iter": i, "loss": (2.0 + k) / i, "clip_loss": 2.0 / i} for i in range(1, 6)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert tool.run_labels([str(r) for r in runs]) == {"a/run": str(runs[0]), "b/run": str(runs[1])}
    written = tool.main(tool.parse_args([str(r) for r in runs]))
    assert written == [str(runs[0] / "plots" / "losses.png"), str(runs[1] / "plots" / "losses.png"),
                       str(tmp_path / "compare_losses.png")]
    assert _png(written[-1]).shape == (300, 800, 3)  # loss, clip_loss
    out = tmp_path / "out"
    written = tool.main(tool.parse_args([str(runs[0]), "--out", str(out)]))
    assert written == [str(out / "losses.png")]
    with pytest.raises(SystemExit) as exc:
        tool.run_cli(tool.main, tool.parse_args([str(tmp_path / "nope")]))
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: no such run directory")


# ---------------------------------------------------------------------------- TensorBoard
@pytest.mark.slow
def test_tensorboard_has_every_metrics_scalar_at_the_same_steps(cosmos_run) -> None:
    tb = _tensorboard_scalars(cosmos_run)
    series = read_metrics(os.path.join(cosmos_run, "metrics.jsonl"))
    assert any(k.startswith("eval/") for k in series)
    for key, (steps, values) in series.items():
        assert key in tb, f"{key} is in metrics.jsonl but not in TensorBoard"
        logged = {s: v for s, v in tb[key].items() if s in steps}
        assert sorted(logged) == steps, key
        assert [logged[s] for s in steps] == pytest.approx(values, rel=1e-6, abs=1e-6), key


@pytest.mark.slow
def test_metrics_jsonl_has_every_tensorboard_scalar(cosmos_run) -> None:
    series = read_metrics(os.path.join(cosmos_run, "metrics.jsonl"))
    for key, points in _tensorboard_scalars(cosmos_run).items():
        assert key in series and sorted(points) == series[key][0], key


# ------------------------------------------------------------------------------- overlays
def test_overlay_panels_show_the_prediction_and_ground_truth(tmp_path) -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:] = (200, 120, 40)
    pred = np.zeros((40, 60), np.int64)
    pred[:, :30], pred[:, 30:] = 1, 2
    gt = np.full((40, 60), 3)
    gt[:4] = 255  # ignored rows keep the image
    names = ["background", "circle", "square", "triangle"]
    out = render_overlay(Image.fromarray(image), pred, gt, names, str(tmp_path / "o.png"))
    pixels = _png(out)
    assert pixels.shape == (500, 1200, 3)
    _assert_not_blank(pixels)

    def columns(colour_pixels) -> np.ndarray:
        colour = colour_pixels.reshape(3)
        match = (np.abs(pixels.astype(int) - colour.astype(int)).max(-1) <= 2)
        return np.nonzero(match)[1]

    colours = palette()
    blend = {c: colorize(image[:1, :1], np.array([[c]]), colours) for c in (1, 2, 3)}
    left, right, truth = columns(blend[1]), columns(blend[2]), columns(blend[3])
    raw = columns(image[:1, :1])
    for cols in (left, right, truth, raw):
        assert cols.size > 5000
    # panels are thirds of the width: image | prediction | ground truth
    assert np.mean((left >= 400) & (left < 800)) > 0.99
    assert np.mean((right >= 400) & (right < 800)) > 0.99
    assert np.percentile(left, 99) < np.percentile(right, 1)  # class 1 left of class 2
    assert np.mean(truth >= 800) > 0.99
    assert np.mean(raw < 400) > 0.8 and np.any(raw >= 800)  # the ignored rows of ground truth

    scores = image_scores(pred, gt, 4)
    assert scores["aAcc"] == 0.0 and scores["mIoU"] == 0.0
    assert image_scores(gt.clip(0, 3), gt, 4)["aAcc"] == 100.0

    only_pred = render_overlay(image, torch.from_numpy(pred), None, names, str(tmp_path / "p.png"))
    assert _png(only_pred).shape == (500, 1200, 3)


def test_overlay_bad_inputs_are_one_line_errors(tmp_path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    ok = np.zeros((8, 8), np.int64)
    with pytest.raises(DataError, match="prediction is 4x8"):
        render_overlay(image, ok[:4], None, ["a"], str(tmp_path / "x.png"))
    with pytest.raises(DataError, match="class 7"):
        render_overlay(image, ok + 7, ok, ["a", "b"], str(tmp_path / "x.png"))
    with pytest.raises(DataError, match="uint8"):
        render_overlay(image.astype(np.float32), ok, None, ["a"], str(tmp_path / "x.png"))
    with pytest.raises(DataError, match="integer"):
        render_overlay(image, ok.astype(float), None, ["a"], str(tmp_path / "x.png"))
    assert not os.listdir(tmp_path)


def test_segmentation_samples_match_the_evaluator(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_dual_encoder("tiny-16").eval()
    data = SyntheticScenes(num_samples=3, image_size=32, split="val")
    evaluator = SyntheticSegmentationEvaluator(data, ClipTokenizer(77), templates=TEMPLATES)
    cm = ConfusionMatrix(len(data.segmentation_classes()))
    for sample, pred in segmentation_predictions(model, evaluator, 5):  # capped at 3 images
        assert pred.shape == sample["mask"].shape
        cm.update(pred, sample["mask"])
    names = [n.split(",")[0] for n in evaluator.runner.class_lines]
    results = evaluator(model)  # the evaluator's own per-image predictions, plus the size split
    split = {"small/mIoU", "small/pixel_acc", "dominant/mIoU", "dominant/pixel_acc",
             "background/IoU"}
    assert cm.compute(names) == {k: v for k, v in results.items() if k not in split}
    assert split <= set(results)

    node = L(SyntheticSegmentationEvaluator)(
        dataset=L(SyntheticScenes)(num_samples=3, image_size=32, split="val"),
        tokenizer=L(ClipTokenizer)(context_length=77), templates=TEMPLATES)
    paths = segmentation_samples(model, node, 2, str(tmp_path / "seg"))
    assert [os.path.basename(p) for p in paths] == ["seg_000.png", "seg_001.png"]
    for path in paths:
        pixels = _png(path)
        assert pixels.shape == (500, 1200, 3)
        _assert_not_blank(pixels)
    with pytest.raises(CosmosError, match="not a segmentation evaluator"):
        segmentation_samples(model, lambda m: {}, 1, str(tmp_path / "no"))
