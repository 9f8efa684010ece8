"""COSMOS meta-architecture against a direct transcription of the official equations
(the official ``src/open_clip/model.py`` student forward and ``src/open_clip/loss.py``), gradient
routing, and the frozen teacher."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cosmos.meta_arch import COSMOS
from cosmos.models import build_cosmos_student
from cosmos.registry import LOSSES

B, N_GLOBAL, N_LOCAL, N_TXT, L = 3, 2, 3, 5, 12


def _model(**kwargs) -> COSMOS:
    torch.manual_seed(0)
    flags = {k: kwargs[k] for k in ("cross_attention", "distillation") if k in kwargs}
    student = build_cosmos_student("tiny-16", vision={"patch_size": 8}, **flags)
    model = COSMOS(student, LOSSES.get("clip_infonce")(), LOSSES.get("cosmos_infonce")(), **kwargs)
    with torch.no_grad():  # a teacher that differs from the student, as after some EMA steps
        for p in model.ema_parameters()[0]:
            p.add_(0.01 * torch.randn_like(p))
    return model


def _inputs():
    torch.manual_seed(1)
    globals_ = [torch.randn(B, 3, 32, 32) for _ in range(N_GLOBAL)]
    locals_ = [torch.randn(B, 3, 16, 16) for _ in range(N_LOCAL)]
    tokens = torch.zeros(B, N_TXT, L, dtype=torch.long)
    for b in range(B):
        for c in range(N_TXT):
            n = 3 + (b + c) % 6
            tokens[b, c, 0] = 49406
            tokens[b, c, 1:n] = torch.randint(1, 49000, (n - 1,))
            tokens[b, c, n] = 49407
    return globals_, locals_, tokens


def _mha(pooler, query, keys, key_padding_mask=None):
    """Transcription of LN → nn.MultiheadAttention (packed in-projection, 1/√d scale)."""
    w, bias = pooler.attn.in_proj_weight, pooler.attn.in_proj_bias
    d = w.shape[1]
    heads = pooler.attn.heads if hasattr(pooler.attn, "heads") else 8
    q = F.layer_norm(query, (d,), pooler.ln_q.weight, pooler.ln_q.bias) @ w[:d].T + bias[:d]
    keys_normed = F.layer_norm(keys, (d,), pooler.ln_k.weight, pooler.ln_k.bias)
    k = keys_normed @ w[d:2 * d].T + bias[d:2 * d]
    v = keys_normed @ w[2 * d:].T + bias[2 * d:]
    hd = d // heads
    q, k, v = (t.view(t.shape[0], heads, hd).transpose(0, 1) for t in (q, k, v))  # (H, len, hd)
    scores = q @ k.transpose(1, 2) / math.sqrt(hd)
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask[None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(0, 1).reshape(-1, d)
    return pooler.attn.out_proj(out)


def _nce(a, b, scale):
    logits = scale * a @ b.T
    labels = torch.arange(a.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _list(a_blocks, b_blocks, scale):
    total = sum(_nce(a, b, scale) for a in a_blocks for b in b_blocks)
    return total / (len(a_blocks) * len(b_blocks))


def _reference_losses(model: COSMOS, globals_, locals_, tokens, mask_padding=False):
    """Per-crop, per-caption, per-sample loops — no batching tricks."""
    s, t = model.student, model.teacher
    crops = list(globals_) + list(locals_)
    feats = [s.encoder.visual(c) for c in crops]                    # each (pooled, tokens)
    F_raw = [f[0] for f in feats]
    P = s.image_token_mapping(feats[0][1])                            # G1 patch tokens (B, N, D)
    texts = [s.encoder.text(tokens[:, c]) for c in range(N_TXT)]
    E_raw = [e[0] for e in texts]
    T = s.text_token_mapping(texts[0][1])                             # caption-1 tokens (B, L, D)
    X = [torch.stack([F.normalize(F_raw[i][b] + _mha(
        s.image_cross_pooler, F_raw[i][b:b + 1], T[b],
        (torch.arange(L) > tokens[b, 0].argmax()) if mask_padding else None)[0], dim=-1)
        for b in range(B)]) for i in range(len(crops))]
    Y = [torch.stack([F.normalize(
        E_raw[c][b] + _mha(s.text_cross_pooler, E_raw[c][b:b + 1], P[b])[0], dim=-1)
        for b in range(B)]) for c in range(N_TXT)]
    v = [F.normalize(f, dim=-1) for f in F_raw[:N_GLOBAL]]
    e = [F.normalize(x, dim=-1) for x in E_raw]
    with torch.no_grad():
        u = [F.normalize(t.encoder.visual(g)[0], dim=-1) for g in globals_]
        w = [F.normalize(t.encoder.text(tokens[:, c])[0], dim=-1) for c in range(2)]
    tau_c, tau_d = s.encoder.logit_scale.exp(), s.distill_logit_scale.exp()
    clip = _list(v, e, tau_c)
    distill = 0.25 * (_list(X, u, tau_d) + _list(X, w, tau_d)
                      + _list(Y, u, tau_d) + _list(Y, w, tau_d))
    return clip, distill


@pytest.mark.parametrize("mask_padding", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_losses_equal_transcription_of_the_equations(mask_padding: bool) -> None:
    model = _model(mask_text_padding=mask_padding)
    g, l, tok = _inputs()
    out = model.forward_explicit(g, l, tok)
    clip, distill = _reference_losses(model, g, l, tok, mask_padding)
    assert torch.allclose(out["clip_loss"], clip, atol=1e-5)
    assert torch.allclose(out["distill_loss"], distill, atol=1e-5)
    assert torch.allclose(out["loss"], clip + distill, atol=1e-5)


@pytest.mark.slow
def test_padding_mask_changes_the_distillation_only() -> None:
    g, l, tok = _inputs()
    plain = _model().forward_explicit(g, l, tok)
    masked = _model(mask_text_padding=True).forward_explicit(g, l, tok)
    assert torch.equal(plain["clip_loss"], masked["clip_loss"])
    assert not torch.allclose(plain["distill_loss"], masked["distill_loss"])


def _grad_modules(model: COSMOS, loss: torch.Tensor) -> set:
    model.zero_grad(set_to_none=True)
    loss.backward()
    names = set()
    for name, p in model.named_parameters():
        if p.grad is not None and p.grad.abs().sum() > 0:
            names.add(_module_of(name))
    return names


def _module_of(name: str) -> str:
    for prefix in ("student.encoder.visual", "student.encoder.text", "student.encoder.logit_scale",
                   "student.image_cross_pooler", "student.text_cross_pooler",
                   "student.image_token_mapping", "student.text_token_mapping",
                   "student.distill_logit_scale", "teacher"):
        if name.startswith(prefix):
            return prefix
    return name


@pytest.mark.slow
def test_gradient_routing_per_term() -> None:
    model = _model()
    g, l, tok = _inputs()
    enc = "student.encoder"
    out = model.student_outputs(g, l, tok)
    teacher = model.teacher_outputs(g, tok)
    # image cross-modal embeddings X: image tower, image_cross_pooler (official
    # text_attn_cross_pool), text tower through caption-1 tokens, text_token_mapping
    x_loss = (out["img_cross"] @ teacher["text"][:B].T).sum()
    assert _grad_modules(model, x_loss) == {f"{enc}.visual", f"{enc}.text",
                                            "student.image_cross_pooler",
                                            "student.text_token_mapping"}
    # text cross-modal embeddings Y: text tower, text_cross_pooler (official
    # visual.attn_cross_pool), image tower through G1 patches, image_token_mapping
    out = model.student_outputs(g, l, tok)
    y_loss = (out["txt_cross"] @ teacher["image"][:B].T).sum()
    assert _grad_modules(model, y_loss) == {f"{enc}.visual", f"{enc}.text",
                                            "student.text_cross_pooler",
                                            "student.image_token_mapping"}
    # the whole objective: every student module, never the teacher
    full = model.forward_explicit(g, l, tok)["loss"]
    assert _grad_modules(model, full) == {f"{enc}.visual", f"{enc}.text", f"{enc}.logit_scale",
                                          "student.image_cross_pooler", "student.text_cross_pooler",
                                          "student.image_token_mapping",
                                          "student.text_token_mapping",
                                          "student.distill_logit_scale"}
    assert all(p.grad is None for p in model.teacher.parameters())


def test_clip_term_uses_global_crops_only() -> None:
    model = _model(distillation=False)
    g, l, tok = _inputs()
    out = model.forward_explicit(g, l, tok)
    assert set(out) == {"clip_loss", "loss"}
    assert not hasattr(model, "teacher") and set(model.encoders()) == {"student"}
    assert not any("cross_pooler" in n or "distill" in n for n, _ in model.named_parameters())
    l2 = [x + 1.0 for x in l]  # local crops feed only the distillation
    assert torch.equal(model.forward_explicit(g, l2, tok)["clip_loss"], out["clip_loss"])


def test_no_cross_attention_ablation_distils_own_embeddings() -> None:
    model = _model(cross_attention=False)
    g, l, tok = _inputs()
    out = model.student_outputs(g, l, tok)
    assert torch.equal(out["img_cross"], out["image"])
    assert torch.equal(out["txt_cross"], out["text"])
    assert torch.isfinite(model.forward_explicit(g, l, tok)["distill_loss"])


def test_teacher_frozen_and_in_eval_mode() -> None:
    model = _model()
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(p.requires_grad for p in model.teacher.parameters())
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    student_ids = {id(p) for p in model.student.parameters()}
    assert not teacher_ids & student_ids
    t_params, s_params = model.ema_parameters()
    assert len(t_params) == len(s_params) == len(list(model.student.parameters()))
    assert set(model.encoders()) == {"student", "teacher"}


@pytest.mark.slow
@pytest.mark.parametrize("mask", [True, False])
def test_trimming_text_padding_is_exact(mask) -> None:
    """Trimmed text tower runs give the untrimmed losses and gradients (fp32: 1e-6 / 1e-5),
    with the padding mask and in the official mode (caption 1 keeps its padded keys)."""
    g, l, tok = _inputs()
    full = _model(mask_text_padding=mask)
    trimmed = _model(mask_text_padding=mask, trim_text_padding=True)
    seen = []
    trimmed.student.encoder.text.register_forward_hook(
        lambda m, args, out: seen.append(tuple(args[0].shape)))
    a, b = full.forward_explicit(g, l, tok), trimmed.forward_explicit(g, l, tok)
    for key in ("clip_loss", "distill_loss", "loss"):
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    longest = lambda t: int(t.argmax(-1).max()) + 1  # noqa: E731
    locals_ = (N_TXT * B - N_GLOBAL * B, longest(tok[:, N_GLOBAL:]))
    if mask:
        assert seen == [(N_GLOBAL * B, longest(tok[:, :N_GLOBAL])), locals_]
    else:  # caption 1 at full context, caption 2 and the locals trimmed
        assert seen == [(B, L), (B, longest(tok[:, 1:N_GLOBAL])), locals_]
    assert max(n for _, n in seen[-2:]) < L
    a["loss"].backward()
    b["loss"].backward()
    for (name, p), q in zip(full.named_parameters(), trimmed.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_uint8_crops_without_the_batch_augmentation_is_a_config_error() -> None:
    from cosmos.utils.errors import ConfigError
    _, _, tok = _inputs()
    batch = {"global_crops_uint8": torch.zeros(B, 2, 32, 32, 3, dtype=torch.uint8),
             "global_photometric": torch.zeros(B, 2, 15), "tokens": tok}
    with pytest.raises(ConfigError, match="dataloader.augment=batch_augments.dino_photometric"):
        _model()(batch)
    batch = {"image_uint8": torch.zeros(B, 40, 40, 3, dtype=torch.uint8),  # resize_on_device
             "global_boxes": torch.zeros(B, 2, 5, dtype=torch.float64),
             "global_photometric": torch.zeros(B, 2, 15), "tokens": tok}
    with pytest.raises(ConfigError, match="dataloader.augment=batch_augments.dino_photometric"):
        _model()(batch)
