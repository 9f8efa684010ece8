"""Every registered backbone, crop policy and meta-architecture satisfies its declared contract
(cosmos/models/base.py, cosmos/data/crop_policy.py, cosmos/data/batch_keys.py,
cosmos/meta_arch/base.py): a structural check plus a tiny forward at real shapes.

A component registered without an entry in the tables below fails
``test_every_registered_component_is_checked``: add its tiny arguments here.
"""
from __future__ import annotations

import importlib
import os
import pickle
import random
import re
from typing import Any, Dict, List

import pytest
import torch
from torch import nn

from cosmos.config import LazyConfig, instantiate
from cosmos.data import ClipTokenizer, collate
from cosmos.data.batch_keys import batch_problems, markdown_table
from cosmos.data.crop_policy import ImageCropPolicy, TextCropPolicy
from cosmos.data.loader import seed_torch
from cosmos.data.synthetic import SyntheticScenes
from cosmos.ema.teacher import ema_update
from cosmos.meta_arch.base import HasEMATeacher, HasExtraMetrics, MetaArchitecture
from cosmos.models.base import DualEncoder, ImageTower, TextTower
from cosmos.registry import BACKBONES, BATCH_AUGMENTS, IMAGE_CROPS, META_ARCHS, TEXT_CROPS
from tests.helpers import REPO

# The worked projects register components too; they are held to the same contracts.
PROJECT_PACKAGES = ("projects.conv_stem_vit.conv_stem_vit",
                    "projects.center_bias_crops.center_bias_crops")
for _package in PROJECT_PACKAGES:
    importlib.import_module(_package)

VISION = dict(image_size=32, width=32, layers=2, heads=2, output_dim=16)
TINY_BACKBONES: Dict[str, Any] = {
    "vit": ("image", dict(VISION, patch_size=16)),
    "conv_stem_vit": ("image", dict(VISION, patch_size=8, stem_channels=8)),
    "timm_vit": ("image", dict(model_name="vit_tiny_patch16_224", image_size=32, output_dim=16,
                               depth=2, embed_dim=32, num_heads=2)),
    "text_transformer": ("text", dict(context_length=16, vocab_size=100, width=32, layers=2,
                                      heads=2, output_dim=16)),
}
VIEWS = dict(global_size=32, local_size=16, num_global=2, num_local=3)
TINY_IMAGE_CROPS: Dict[str, Dict[str, Any]] = {
    "clip_single": dict(size=32), "clip_eval": dict(size=32),
    "cosmos_multicrop": VIEWS, "cosmos_multicrop_fast": VIEWS,
    "center_bias_multicrop": VIEWS,
}
TINY_TEXT_CROPS: Dict[str, Dict[str, Any]] = {
    "cosmos_textcrop": dict(num_captions=4, num_global=2, max_global_sentences=2),
    "sampled_caption": dict(max_global_sentences=2),
    "pixelprose_textcrop": dict(num_captions=4, num_global=2, max_global_sentences=2),
    "full_caption": {}, "raw_caption": {}, "full_caption_repeated": dict(num_captions=3),
}
TOWER = ["width=32", "layers=1", "heads=2", "output_dim=32"]
TINY_META_ARCHS: Dict[str, Any] = {  # config, overrides, the loss terms besides "loss"
    "clip": ("configs/clip/clip_tiny_synthetic.py",
             [f"model.model.{t}.{kv}" for t in ("visual", "text") for kv in TOWER]
             + ["model.model.visual.image_size=32", "dataloader.train.image_transform.size=32"],
             {"clip_loss"}),
    "cosmos": ("configs/cosmos/cosmos_tiny_synthetic.py",
               [f"model.student.encoder.{t}.{kv}" for t in ("visual", "text") for kv in TOWER]
               + ["model.student.encoder.visual.image_size=32",
                  "dataloader.train.image_transform.global_size=32",
                  "dataloader.train.image_transform.local_size=16",
                  "dataloader.train.image_transform.num_local=2",
                  "dataloader.train.text_transform.num_captions=4"],
               {"clip_loss", "distill_loss"}),
}
CAPTIONS = {
    "raw": "a red square",
    "short": ["A red square on a striped background."],
    "long": ["A large red square in the centre.", "A small blue circle at the top left.",
             "A tiny green triangle at the bottom right."],
    "caption": "A large red square in the centre. A small blue circle at the top left.",
}
EOT = 99  # the largest id of the tiny text towers' vocabulary


@pytest.fixture(scope="module")
def scenes() -> SyntheticScenes:
    return SyntheticScenes(num_samples=8, image_size=48, seed=3)


def test_every_registered_component_is_checked() -> None:
    for registry, table in ((BACKBONES, TINY_BACKBONES), (IMAGE_CROPS, TINY_IMAGE_CROPS),
                            (TEXT_CROPS, TINY_TEXT_CROPS), (META_ARCHS, TINY_META_ARCHS)):
        missing = sorted(set(registry.names()) - set(table))
        assert not missing, (f"{registry.name} {missing} are registered but not checked: add "
                             "tiny arguments to tests/package/test_interfaces.py")


def test_batch_key_table_is_the_one_in_the_docs() -> None:
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        assert markdown_table() in f.read(), "docs/architecture.md: paste markdown_table()"


# -- backbones ---------------------------------------------------------------------------------
def build_tower(name: str) -> nn.Module:
    torch.manual_seed(0)
    return BACKBONES.get(name)(**TINY_BACKBONES[name][1]).eval()


def text_batch(batch: int, length: int) -> torch.Tensor:
    """(B, L) ids in 1…EOT−1, an EOT at a different position per row, zero padding after it."""
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, EOT, (batch, length), generator=gen)
    for row in range(batch):
        end = 3 + 2 * row
        tokens[row, end] = EOT
        tokens[row, end + 1:] = 0
    return tokens


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_backbone_forward_contract(name: str) -> None:
    kind = TINY_BACKBONES[name][0]
    tower = build_tower(name)
    assert isinstance(tower.output_dim, int) and isinstance(tower.width, int)
    batch = 3
    if kind == "image":
        assert isinstance(tower.image_size, int)
        # the global size and a smaller (local crop) size through the same tower
        inputs = [torch.randn(batch, 3, s, s, generator=torch.Generator().manual_seed(s))
                  for s in (tower.image_size, tower.image_size // 2)]
    else:
        for attr in ("context_length", "vocab_size"):
            assert isinstance(getattr(tower, attr), int), attr
        inputs = [text_batch(batch, tower.context_length)]
    for x in inputs:
        pooled, tokens = tower(x)
        assert pooled.shape == (batch, tower.output_dim)
        assert tokens.ndim == 3 and tokens.shape[0] == batch and tokens.shape[2] == tower.width
        if kind == "text":
            assert tokens.shape[1] == x.shape[1]
        elif hasattr(tower, "patch_size"):
            assert tokens.shape[1] == (x.shape[-1] // tower.patch_size) ** 2
        assert torch.isfinite(pooled).all() and torch.isfinite(tokens).all()
        # rows are independent: sample 1 alone gives the batch's row 1
        alone_pooled, alone_tokens = tower(x[1:2])
        torch.testing.assert_close(alone_pooled[0], pooled[1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(alone_tokens[0], tokens[1], atol=1e-5, rtol=1e-4)
    if kind == "text" and getattr(tower, "causal", False):
        x = inputs[0]
        last = int(x.argmax(-1).max())
        cut = tower(x[:, : last + 1])[0]  # trailing padding cut: the pooled output is unchanged
        torch.testing.assert_close(cut, tower(x)[0], atol=1e-5, rtol=1e-4)
    # CLIP uses the pooled output only; under DDP every parameter must take part in it
    tower.train()
    tower(inputs[0])[0].sum().backward()
    unused = [n for n, p in tower.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"{name}: parameters without a gradient from the pooled output: {unused}"


def _declares_fsdp_units(cls: type) -> bool:
    return callable(getattr(cls, "fsdp_units", None))


@pytest.mark.parametrize("name", sorted(TINY_BACKBONES))
def test_backbone_declares_fsdp_units(name: str) -> None:
    if not any(_declares_fsdp_units(cls) for n, cls in BACKBONES.items()
               if cls.__module__.startswith("cosmos.")):
        pytest.skip("no core tower declares fsdp_units() yet (added by issue 18's layering "
                    "work); the check runs once one does")
    tower = build_tower(name)
    assert _declares_fsdp_units(type(tower)), f"backbones.{name} has no fsdp_units()"
    units = tower.fsdp_units()
    assert isinstance(units, list) and all(isinstance(u, nn.Module) for u in units)
    inside = {id(m) for m in tower.modules() if m is not tower}
    assert all(id(u) in inside for u in units), "every unit is a proper submodule of the tower"
    assert len({id(u) for u in units}) == len(units), "each unit listed once"
    kind = ImageTower if TINY_BACKBONES[name][0] == "image" else TextTower
    assert isinstance(tower, kind)  # the whole protocol, fsdp_units included


# -- crop policies -----------------------------------------------------------------------------
def run_image_policy(policy: Any, image: Any, position: int) -> Dict[str, Any]:
    """One sample's views exactly as the loaders make them (seeded by its stream position)."""
    rng = random.Random((7 << 48) ^ position)
    seed_torch(policy, rng)
    return dict(policy(image, rng))


def _tensors(sample: Dict[str, Any]) -> List[torch.Tensor]:
    return [t for v in sample.values() for t in (v if isinstance(v, list) else [v])]


@pytest.mark.parametrize("name", sorted(TINY_IMAGE_CROPS))
def test_image_crop_policy_contract(name: str, scenes) -> None:
    policy = IMAGE_CROPS.get(name)(**TINY_IMAGE_CROPS[name])
    assert isinstance(policy, ImageCropPolicy)
    images = [scenes[i]["image"] for i in range(3)]
    samples = [run_image_policy(policy, im, p) for p, im in enumerate(images)]
    # a sample's views depend on its position only: not on the samples made before it, and a
    # worker's pickled copy makes the same
    copy = pickle.loads(pickle.dumps(policy))
    for position in (2, 0):
        again = run_image_policy(copy, images[position], position)
        assert again.keys() == samples[position].keys()
        for a, b in zip(_tensors(again), _tensors(samples[position])):
            assert torch.equal(a, b), f"{name}: position {position} differs on replay"
    batch = collate(samples)
    assert batch_problems(batch) == []
    if any(k.endswith("_uint8") for k in batch):  # the fast path's batch step makes the crops
        batch = BATCH_AUGMENTS.get("dino_photometric")()(batch, "cpu")
        assert batch_problems(batch) == []
    views = _tensors({k: v for k, v in batch.items() if k != "batch_size"})
    assert views and all(torch.isfinite(v).all() for v in views)
    assert any(k in batch for k in ("images", "global_crops")), "no model input in the batch"


def _words(text: str) -> set:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.parametrize("name", sorted(TINY_TEXT_CROPS))
def test_text_crop_policy_contract(name: str) -> None:
    policy = TEXT_CROPS.get(name)(**TINY_TEXT_CROPS[name])
    assert isinstance(policy, TextCropPolicy)
    outputs = [policy(CAPTIONS, random.Random(seed)) for seed in range(4)]
    assert outputs == [policy(CAPTIONS, random.Random(seed)) for seed in range(4)]  # replayable
    kinds = {type(o) for o in outputs}
    assert kinds in ({str}, {list}), f"{name}: returns {kinds}"
    texts = [t for o in outputs for t in ([o] if isinstance(o, str) else o)]
    assert texts and all(isinstance(t, str) and t for t in texts)
    if isinstance(outputs[0], list):
        assert len({len(o) for o in outputs}) == 1, "every sample gives the same number"
    source = set().union(*(_words(v if isinstance(v, str) else " ".join(v))
                           for v in CAPTIONS.values()))
    assert all(_words(t) <= source for t in texts), "a text crop only holds caption words"
    tokenizer = ClipTokenizer(context_length=32)
    batch = collate([{"tokens": tokenizer(o)} for o in outputs])
    assert batch_problems(batch) == []
    with pytest.raises(ValueError):  # a sample without usable text: one line, counted as bad
        policy({"unrelated": "x"}, random.Random(0))


# -- meta-architectures ------------------------------------------------------------------------
def build_meta_arch(name: str, scenes) -> Any:
    """The registered meta-architecture from its tiny config, and a real batch for it made by
    that config's own crop policies, tokenizer and batch augmentation."""
    config, overrides, _ = TINY_META_ARCHS[name]
    cfg = LazyConfig.apply_overrides(LazyConfig.load(os.path.join(REPO, config)), overrides)
    torch.manual_seed(0)
    meta = instantiate(cfg.model)
    assert type(meta) is META_ARCHS.get(name)
    train = cfg.dataloader.train
    image_policy = instantiate(train.image_transform)
    text_policy = instantiate(train.text_transform)
    tokenizer = ClipTokenizer(context_length=int(train.tokenizer.context_length))
    samples = []
    for position in range(4):
        item = scenes[position]
        rng = random.Random(position)
        seed_torch(image_policy, rng)
        sample = dict(image_policy(item["image"], rng))
        sample["tokens"] = tokenizer(text_policy(item["captions"], rng))
        sample["key"] = item["key"]
        samples.append(sample)
    batch = collate(samples)
    augment = cfg.dataloader.get("augment")
    if augment is not None:
        batch = instantiate(augment)(batch, "cpu")
    return meta, batch


@pytest.mark.parametrize("name", sorted(TINY_META_ARCHS))
def test_meta_arch_contract(name: str, scenes) -> None:
    meta, batch = build_meta_arch(name, scenes)
    assert batch_problems(batch) == []
    assert isinstance(meta, MetaArchitecture)
    meta.train()
    out = meta(batch)
    assert set(out) == {"loss"} | TINY_META_ARCHS[name][2]
    for key, value in out.items():
        assert value.ndim == 0 and value.dtype.is_floating_point and torch.isfinite(value), key
    out["loss"].backward()
    unused = [n for n, p in meta.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"parameters outside the loss break DDP: {unused}"

    encoders = meta.encoders()
    assert encoders and all(isinstance(e, DualEncoder) for e in encoders.values())
    submodules = {id(m) for m in meta.modules()}
    assert all(id(e) in submodules for e in encoders.values()), "export finds encoders by path"
    images = batch["images"] if "images" in batch else batch["global_crops"][0]
    tokens = batch["tokens"] if batch["tokens"].ndim == 2 else batch["tokens"][:, 0]
    with torch.no_grad():
        for enc in encoders.values():
            emb_i, emb_t = enc.encode_image(images, True), enc.encode_text(tokens, True)
            assert emb_i.shape == emb_t.shape == (4, enc.visual.output_dim)
            torch.testing.assert_close(emb_i.norm(dim=-1), torch.ones(4))
    if name == "clip":  # the loss is the CLIP loss of what evaluation sees
        enc = encoders["student"]
        expected = meta.loss(enc.encode_image(images, True), enc.encode_text(tokens, True),
                             enc.logit_scale.exp(), None)
        torch.testing.assert_close(out["loss"], expected)
    if name == "cosmos":  # the total is the weighted sum of the terms
        torch.testing.assert_close(out["loss"], meta.clip_weight * out["clip_loss"]
                                   + meta.distill_weight * out["distill_loss"])
    if isinstance(meta, HasExtraMetrics):
        metrics = meta.extra_metrics()
        assert metrics and all(isinstance(v, float) for v in metrics.values())
        scale = float(encoders["student"].logit_scale.detach().exp())
        assert metrics.get("logit_scale") == pytest.approx(scale)


@pytest.mark.parametrize("name", sorted(TINY_META_ARCHS))
def test_ema_parameters_contract(name: str, scenes) -> None:
    meta, _ = build_meta_arch(name, scenes)
    if not isinstance(meta, HasEMATeacher):
        pytest.skip(f"meta_archs.{name} has no EMA teacher (ema_parameters is optional)")
    teacher, student = meta.ema_parameters()
    assert len(teacher) == len(student) > 0
    assert all(t.shape == s.shape for t, s in zip(teacher, student))
    assert not any(t.requires_grad for t in teacher)
    assert not {id(t) for t in teacher} & {id(s) for s in student}
    # the teacher starts as a copy; one update with momentum 0.25 moves it 3/4 of the way
    assert all(torch.equal(t, s) for t, s in zip(teacher, student))
    with torch.no_grad():
        for s in student:
            s.add_(1.0)
    before = [t.clone() for t in teacher]
    ema_update(teacher, student, 0.25)
    for t, b in zip(teacher, before):
        torch.testing.assert_close(t, b + 0.75)
