"""Attention backends agree (sdpa/math/xformers); varlen packing; backend choice; no warnings."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Dict, Optional

import pytest
import torch

from cosmos.layers.attention import (attention, attention_backend, attention_varlen,
                                     available_backends, pack, unavailable_reason, unpack)

from tests.helpers import REPO
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 1e-2}

# name → (Lq, Lk, is_causal, padded): self, causal, cross with Lq != Lk, key padding, both.
CASES = {
    "self": (6, 6, False, False),
    "causal": (6, 6, True, False),
    "cross": (5, 9, False, False),
    "cross_causal": (5, 9, True, False),
    "padding": (6, 11, False, True),
    "causal_padding": (7, 7, True, True),
}


def _inputs(case: str, dtype: torch.dtype, device: str = "cpu", heads: int = 2, dim: int = 8):
    lq, lk, causal, padded = CASES[case]
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, heads, n, dim, generator=gen) for n in (lq, lk, lk))
    pad = None
    if padded:
        pad = torch.zeros(3, lk, dtype=torch.bool)
        pad[1, lk - 3:] = True
        pad[2, 2:] = True
        pad = pad.to(device)
    to = dict(device=device, dtype=dtype)
    return q.to(**to), k.to(**to), v.to(**to), dict(is_causal=causal, key_padding_mask=pad)


def _with_backend(monkeypatch, backend: str, fn, *args, **kwargs):
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", backend)
    return fn(*args, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", list(CASES))
def test_sdpa_matches_math(case: str, dtype: torch.dtype, monkeypatch) -> None:
    q, k, v, masks = _inputs(case, dtype)
    sdpa = _with_backend(monkeypatch, "sdpa", attention, q, k, v, **masks)
    ref = _with_backend(monkeypatch, "math", attention, q, k, v, **masks)
    assert sdpa.shape == ref.shape == q.shape[:3] + (v.shape[-1],) and sdpa.dtype == dtype
    torch.testing.assert_close(sdpa.float(), ref.float(), atol=TOL[dtype], rtol=0)


def test_causal_cross_is_bottom_right_aligned(monkeypatch) -> None:
    q, k, v, _ = _inputs("cross", torch.float32)  # Lq 5, Lk 9: query i sees keys ≤ i + 4
    out = _with_backend(monkeypatch, "sdpa", attention, q, k, v, is_causal=True)
    last = _with_backend(monkeypatch, "math", attention, q[:, :, -1:], k, v)
    first = _with_backend(monkeypatch, "math", attention, q[:, :, :1], k[:, :, :5], v[:, :, :5])
    torch.testing.assert_close(out[:, :, -1:], last, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :, :1], first, atol=1e-5, rtol=0)


def test_attn_mask_bool_and_additive_agree(monkeypatch) -> None:
    q, k, v, _ = _inputs("cross", torch.float32)
    keep = torch.rand(q.shape[-2], k.shape[-2], generator=torch.Generator().manual_seed(1)) > 0.3
    keep[:, 0] = True
    additive = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    for backend in ("sdpa", "math"):
        a = _with_backend(monkeypatch, backend, attention, q, k, v, attn_mask=keep)
        b = _with_backend(monkeypatch, backend, attention, q, k, v, attn_mask=additive)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- varlen
def _segments(lengths, heads: int = 2, dim: int = 8, seed: int = 0, dtype=torch.float32,
              device: str = "cpu"):
    """[(L_i, H, D)] random sequences."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, heads, dim, generator=gen).to(device=device, dtype=dtype)
            for n in lengths]


def _loop_reference(qs, ks, vs):
    """Per-sequence math attention; inputs [(L_i, H, D)] → [(Lq_i, H, D)]."""
    from cosmos.layers.attention import math_attention

    outs = []
    for q, k, v in zip(qs, ks, vs):
        heads_first = [t.transpose(0, 1)[None] for t in (q, k, v)]  # (1, H, L, D)
        outs.append(math_attention(*heads_first)[0].transpose(0, 1))
    return outs


def test_pack_unpack_roundtrip() -> None:
    parts = _segments([3, 7, 1])
    packed, lens = pack(parts)
    assert packed.shape == (1, 11, 2, 8) and lens == [3, 7, 1]
    for a, b in zip(parts, unpack(packed, lens)):
        assert torch.equal(a, b)
    assert [t.shape[0] for t in unpack(packed[0], lens)] == lens
    with pytest.raises(ValueError, match="sum of seqlens"):
        unpack(packed, [3, 7])


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_varlen_equals_per_sequence_loop(backend: str, cross: bool, monkeypatch) -> None:
    q_lens = [3, 7, 5]
    kv_lens = [6, 2, 9] if cross else q_lens
    qs = _segments(q_lens, seed=0)
    ks, vs = _segments(kv_lens, seed=1), _segments(kv_lens, seed=2)
    (q, _), (k, _), (v, _) = pack(qs), pack(ks), pack(vs)
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", backend)
    out = attention_varlen(q, k, v, q_lens, kv_lens if cross else None)
    assert out.shape == q.shape
    for got, want in zip(unpack(out, q_lens), _loop_reference(qs, ks, vs)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_varlen_rejects_bad_lengths(monkeypatch) -> None:
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "sdpa")
    q, _ = pack(_segments([3, 4]))
    with pytest.raises(ValueError, match="seqlens sum"):
        attention_varlen(q, q, q, [3, 3])
    with pytest.raises(ValueError, match="one kv length per query segment"):
        attention_varlen(q, q, q, [3, 4], [7])


# ----------------------------------------------------------------------------- xformers
def _xformers_cuda_reason(dtype: torch.dtype) -> Optional[str]:
    """Why the GPU comparison cannot run here, or None."""
    reason = unavailable_reason("xformers", "cuda", dtype)
    if reason is None and "xformers" not in available_backends("cuda", dtype):
        reason = "xformers not listed by available_backends"
    return reason


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_xformers_matches_sdpa_on_gpu(dtype: torch.dtype, monkeypatch) -> None:
    reason = _xformers_cuda_reason(dtype)
    if reason is not None:
        pytest.skip(f"xformers GPU comparison not run: {reason}")
    for case in CASES:
        q, k, v, masks = _inputs(case, dtype, device="cuda", heads=4, dim=64)
        assert _with_backend(monkeypatch, "auto", attention_backend, q) == "xformers"
        grads = {}
        for backend in ("xformers", "sdpa"):
            leaves = [t.detach().requires_grad_() for t in (q, k, v)]
            out = _with_backend(monkeypatch, backend, attention, *leaves, **masks)
            out.float().square().sum().backward()
            grads[backend] = [out.detach()] + [t.grad for t in leaves]
        for got, want in zip(grads["xformers"], grads["sdpa"]):
            torch.testing.assert_close(got.float(), want.float(), atol=4 * TOL[dtype],
                                       rtol=TOL[dtype], msg=lambda m, case=case: f"{case}: {m}")
    q_lens, kv_lens = [3, 70, 17], [40, 9, 33]
    q = pack(_segments(q_lens, heads=4, dim=64, dtype=dtype, device="cuda"))[0]
    k = pack(_segments(kv_lens, heads=4, dim=64, seed=1, dtype=dtype, device="cuda"))[0]
    v = pack(_segments(kv_lens, heads=4, dim=64, seed=2, dtype=dtype, device="cuda"))[0]
    outs: Dict[str, torch.Tensor] = {
        b: _with_backend(monkeypatch, b, attention_varlen, q, k, v, q_lens, kv_lens)
        for b in ("xformers", "sdpa")}
    torch.testing.assert_close(outs["xformers"].float(), outs["sdpa"].float(), atol=TOL[dtype],
                               rtol=0)


def test_forced_xformers_where_unavailable_raises(monkeypatch) -> None:
    q, k, v, _ = _inputs("self", torch.float32)  # CPU fp32: xformers never has a kernel here
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "xformers")
    reasons = r"xformers cannot run here: .*(not installed|no kernels|disabled)"
    with pytest.raises(RuntimeError, match=reasons):
        attention(q, k, v)
    with pytest.raises(RuntimeError, match="xformers cannot run here"):
        attention_varlen(*(t.transpose(1, 2)[:1] for t in (q, k, v)), [6])


def test_xformers_disabled_env_is_honoured(monkeypatch) -> None:
    monkeypatch.setenv("XFORMERS_DISABLED", "1")
    assert "XFORMERS_DISABLED" in unavailable_reason("xformers", "cuda", torch.float16)
    assert available_backends("cuda", torch.float16) == ["sdpa", "math"]


def test_unknown_backend_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "flash9")
    q, _ = pack(_segments([2]))
    with pytest.raises(ValueError, match="COSMOS_ATTN_BACKEND"):
        attention_varlen(q, q, q, [2])


# ----------------------------------------------------------------------------- subprocess checks
def _python(script: str, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_env_math_is_honoured_and_logged_once() -> None:
    proc = _python("""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
        import torch
        import torch.nn.functional as F
        def _no_sdpa(*args, **kwargs):
            raise AssertionError("sdpa called although COSMOS_ATTN_BACKEND=math")
        F.scaled_dot_product_attention = _no_sdpa
        from cosmos.layers.attention import attention, attention_backend
        q = torch.randn(2, 2, 4, 8)
        for _ in range(3):
            attention(q, q, q, is_causal=True)
        print(attention_backend(q))
    """, COSMOS_ATTN_BACKEND="math")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "math"
    line = "attention backend: math (device=cpu, dtype=float32)"
    assert proc.stderr.count(line) == 1, proc.stderr


@pytest.mark.slow
def test_auto_on_cpu_fp32_is_silent() -> None:
    """Fresh interpreter: importing, probing xformers (if installed) and attending emit nothing."""
    proc = _python("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch
            from cosmos.layers.attention import attention, attention_backend, available_backends
            q = torch.randn(2, 2, 4, 8)
            attention(q, q, q)
            backends = available_backends("cpu", torch.float32)
            available_backends("cuda", torch.float16)
        ours = [w for w in caught
                if "cosmos" in w.filename or "xformers" in w.filename + str(w.message)]
        print(attention_backend(q), ",".join(backends), len(ours))
        for w in ours:
            print(w.filename, w.message)
    """, COSMOS_ATTN_BACKEND="auto")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["sdpa", "sdpa,math", "0"], proc.stdout
    stderr = proc.stderr.lower()
    assert "xformers" not in stderr and "warning" not in stderr, proc.stderr


def test_auto_on_cpu_fp32_no_warnings_in_process(monkeypatch) -> None:
    monkeypatch.setenv("COSMOS_ATTN_BACKEND", "auto")
    q, k, v, masks = _inputs("padding", torch.float32)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attention(q, k, v, **masks)
        available_backends("cpu", torch.float32)
    assert not [w for w in caught if "cosmos" in w.filename or "xformers" in w.filename], caught
