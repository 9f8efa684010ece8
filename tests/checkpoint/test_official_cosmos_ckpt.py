"""Official COSMOS checkpoints: key layout, student/teacher loading with `module.` prefixes,
export."""
from __future__ import annotations

import pytest
import torch

from cosmos.models import (build_cosmos_student, export_openclip, from_official_cosmos,
                           to_official_cosmos)
from cosmos.utils.errors import CheckpointError

OFFICIAL_EXTRA_KEYS = {
    "distill_logit_scale",
    *(f"{prefix}.{k}" for prefix in ("visual.attn_cross_pool", "text_attn_cross_pool")
      for k in ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                "attn.out_proj.bias", "ln_q.weight", "ln_q.bias", "ln_k.weight", "ln_k.bias")),
    "image_token_mapping.weight", "image_token_mapping.bias",
    "text_token_mapping.weight", "text_token_mapping.bias",
}


def test_vitb16_student_matches_official_counts_and_keys() -> None:
    student = build_cosmos_student("ViT-B-16")
    assert sum(p.numel() for p in student.parameters()) == 152_382_466  # official ViT-B-16 COSMOS
    sd = to_official_cosmos(student)
    assert len(sd) == 323 and OFFICIAL_EXTRA_KEYS <= set(sd)
    assert sd["visual.attn_cross_pool.attn.in_proj_weight"].shape == (1536, 512)
    assert sd["image_token_mapping.weight"].shape == (512, 768)


def _tiny_pair():
    torch.manual_seed(0)
    student, teacher = build_cosmos_student("tiny-16"), build_cosmos_student("tiny-16")
    return student, teacher


def test_round_trip_through_an_official_style_file(tmp_path) -> None:
    student, teacher = _tiny_pair()
    ckpt = {"epoch": 3, "name": "run",
            "student": {f"module.{k}": v for k, v in to_official_cosmos(student).items()},
            "teacher": to_official_cosmos(teacher), "optimizer": {}}
    path = tmp_path / "epoch_3.pt"
    torch.save(ckpt, path)
    s2, t2 = from_official_cosmos(str(path), arch="tiny-16")
    for ours, loaded in ((student, s2), (teacher, t2)):
        a, b = ours.state_dict(), loaded.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(p.requires_grad for p in t2.parameters())
    # the pooler the official code keeps in the vision tower produces text-side embeddings
    assert torch.equal(s2.text_cross_pooler.ln_q.weight,
                       ckpt["student"]["module.visual.attn_cross_pool.ln_q.weight"])
    images, tokens = torch.randn(2, 3, 32, 32), torch.tensor([[49406, 5, 49407] + [0] * 74] * 2)
    assert torch.allclose(s2.encoder.encode_image(images), student.encoder.encode_image(images))
    assert torch.allclose(s2.encoder.encode_text(tokens), student.encoder.encode_text(tokens))
    assert set(export_openclip(t2)) == {k for k in to_official_cosmos(teacher)
                                        if k not in OFFICIAL_EXTRA_KEYS}


def test_bad_checkpoints_give_one_line_errors() -> None:
    student, teacher = _tiny_pair()
    with pytest.raises(CheckpointError, match="expected 'student' and 'teacher'"):
        from_official_cosmos({"state_dict": to_official_cosmos(student)}, arch="tiny-16")
    plain = {k: v for k, v in to_official_cosmos(student).items() if k not in OFFICIAL_EXTRA_KEYS}
    with pytest.raises(CheckpointError, match="no COSMOS modules"):
        from_official_cosmos({"student": plain, "teacher": plain}, arch="tiny-16")
    broken = to_official_cosmos(student)
    del broken["text_token_mapping.bias"]
    with pytest.raises(CheckpointError, match="text_token_mapping.bias"):
        from_official_cosmos({"student": broken, "teacher": to_official_cosmos(teacher)},
                             arch="tiny-16")
