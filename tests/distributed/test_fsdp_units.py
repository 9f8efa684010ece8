"""FSDP wrap units declared by the towers (``fsdp_units()``) are exactly the modules the former
rule picked: every ``ResidualAttentionBlock`` and every block of a timm trunk, in module order,
student and teacher alike. No process group is needed: only the unit list is compared."""
from __future__ import annotations

import os
from typing import List

import pytest
import torch
from torch import nn

import cosmos
from cosmos.config import LazyConfig, instantiate
from cosmos.distributed.fsdp import fsdp_wrap_units
from cosmos.layers.blocks import ResidualAttentionBlock
from cosmos.models import TextTransformer, VisionTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(cosmos.__file__)))
TINY_CONFIGS = ["configs/clip/clip_tiny_synthetic.py", "configs/clip/siglip_tiny_synthetic.py",
                "configs/cosmos/cosmos_tiny_synthetic.py"]


def _former_rule(model: nn.Module) -> List[nn.Module]:
    """The isinstance rule ``wrap_fsdp`` used before towers declared their units."""
    from cosmos.models.timm_tower import TimmImageTower

    units: List[nn.Module] = []
    for module in model.modules():
        if isinstance(module, ResidualAttentionBlock):
            units.append(module)
        elif isinstance(module, TimmImageTower) and hasattr(module.trunk, "blocks"):
            units.extend(module.trunk.blocks)
    return units


def _same_modules(a: List[nn.Module], b: List[nn.Module]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


@pytest.mark.parametrize("config", TINY_CONFIGS)
def test_tiny_config_units_equal_the_former_rule(config: str) -> None:
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(os.path.join(ROOT, config)).model)
    units = fsdp_wrap_units(model)
    blocks = [m for m in model.modules() if isinstance(m, ResidualAttentionBlock)]
    assert len(units) == len(blocks) > 0
    assert _same_modules(units, _former_rule(model))


def test_cosmos_units_cover_student_and_teacher_towers() -> None:
    model = instantiate(LazyConfig.load(
        os.path.join(ROOT, "configs/cosmos/cosmos_tiny_synthetic.py")).model)
    towers = [m for m in model.modules() if isinstance(m, (VisionTransformer, TextTransformer))]
    assert len(towers) == 4  # student and teacher, image and text
    expected = [block for tower in towers for block in tower.transformer.resblocks]
    assert _same_modules(fsdp_wrap_units(model), expected)


def test_timm_tower_units_equal_the_former_rule() -> None:
    pytest.importorskip("timm", reason="timm is an optional dependency")
    from cosmos.models.timm_tower import TimmImageTower

    torch.manual_seed(0)
    model = nn.ModuleDict({
        "visual": TimmImageTower("vit_tiny_patch16_224", image_size=32, output_dim=16, depth=3),
        "text": TextTransformer(context_length=8, vocab_size=64, width=32, layers=2, heads=2,
                                output_dim=16)})
    units = fsdp_wrap_units(model)
    assert len(units) == 3 + 2
    assert _same_modules(units, _former_rule(model))
    assert _same_modules(units[:3], list(model["visual"].trunk.blocks))


class _Wrapper(nn.Module):
    """Declares the units of the tower it holds: the tower's own declaration repeats them."""

    def __init__(self, tower: TextTransformer) -> None:
        super().__init__()
        self.tower, self.head = tower, nn.Linear(4, 4)

    def fsdp_units(self) -> List[nn.Module]:
        return self.tower.fsdp_units()


def test_units_are_deduplicated_and_modules_without_the_method_add_none() -> None:
    tower = TextTransformer(context_length=8, vocab_size=64, width=32, layers=2, heads=2,
                            output_dim=16)
    assert _same_modules(fsdp_wrap_units(_Wrapper(tower)), list(tower.transformer.resblocks))
    assert fsdp_wrap_units(nn.Sequential(nn.Linear(4, 4), nn.ReLU())) == []
