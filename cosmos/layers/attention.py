"""One attention function with a backend chosen per call.

Backends
    ``xformers``  ``xformers.ops.memory_efficient_attention`` (optional dependency, imported lazily
                  and quietly), layout (B, L, H, D).
    ``sdpa``      ``torch.nn.functional.scaled_dot_product_attention``, layout (B, H, L, D).
    ``math``      a plain float32 reference, softmax(q kᵀ / √D + mask) v.

``COSMOS_ATTN_BACKEND=auto|xformers|sdpa|math`` is read on every call. ``auto`` uses xformers only
when it imports, the tensors are CUDA fp16/bf16 and a one-time probe (cached per (device, dtype))
of a tiny forward+backward ``memory_efficient_attention`` succeeded; otherwise SDPA. An xformers
call that finds no operator for its particular inputs also falls back to SDPA under ``auto``.
Forcing ``xformers`` where it cannot run raises ``RuntimeError`` with the reason. Setting
``XFORMERS_DISABLED`` (to anything but ``0``/empty) makes xformers unavailable. Nothing here warns:
the backend in use is logged once per (backend, device, dtype) at INFO.

Masks (all backends agree): ``key_padding_mask`` (B, Lk) bool, True = ignore; ``attn_mask`` bool
(True = attend) or additive float, broadcastable to (B, H, Lq, Lk); ``is_causal`` aligns the
triangle to the bottom-right corner (query i sees keys j ≤ i + Lk − Lq), the usual top-left one
when Lq == Lk. On xformers, causal-only calls use ``LowerTriangularMask`` (or
``LowerTriangularFromBottomRightMask`` when Lq != Lk); any padding / explicit mask is turned into a
dense additive bias (B|1, H|1, Lq, Lk) in q's dtype, allocated with its key axis padded to a
multiple of 16 and sliced, as xformers' kernels require aligned bias strides.

Variable-length packing (:func:`attention_varlen`) puts N sequences of different lengths in one
(1, ΣL, H, D) tensor; each query segment attends only to its own key segment. xformers uses a
``BlockDiagonalMask``; SDPA/math use an equivalent dense (ΣLq, ΣLk) boolean mask, cached by the
tuple of lengths (O((ΣL)²) memory: fine for tests and moderate packs, costly for very long ones).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

ENV_VAR = "COSMOS_ATTN_BACKEND"
BACKENDS = ("xformers", "sdpa", "math")
_CHOICES = ("auto",) + BACKENDS
_HALF = (torch.float16, torch.bfloat16)
_BIAS_ALIGN = 16  # elements; covers xformers' 128-bit alignment for fp32 (4) and fp16/bf16 (8)

_announced: set = set()
_xformers_state: Optional[Tuple[object, Optional[str], Optional[str]]] = None  # (ops, error, note)
_probe_cache: Dict[Tuple[str, torch.dtype], Optional[str]] = {}
_xformers_fallbacks: set = set()

DeviceLike = Union[str, torch.device]


# ----------------------------------------------------------------------------- backend choice
def requested_backend() -> str:
    """The value of ``COSMOS_ATTN_BACKEND`` (default ``auto``), validated."""
    value = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ValueError(f"{ENV_VAR}={value!r}: expected one of {', '.join(_CHOICES)}")
    return value


@contextlib.contextmanager
def _quiet_xformers() -> Iterator[None]:
    """Silence xformers' logging (``xformers`` and its child loggers) and warnings for a moment."""
    xf_logger = logging.getLogger("xformers")
    old_level = xf_logger.level
    xf_logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        xf_logger.setLevel(old_level)


def _kernel_load_note() -> Optional[str]:
    """Why xformers' compiled extension did not load (e.g. built for another torch), or None."""
    try:
        from xformers import _cpp_lib
    except Exception:  # noqa: BLE001 - any import problem just means "no note"
        return None
    exc = getattr(_cpp_lib, "_cpp_library_load_exception", None)
    if exc is None:
        return None
    build = getattr(exc, "build_info", None)
    built_for = getattr(build, "torch_version", None)
    if built_for is None:
        found = re.search(r"PyTorch (\S+)", str(exc))
        built_for = found.group(1) if found else None
    suffix = f" (built for torch {built_for})" if built_for else ""
    return f"xformers kernels do not load on torch {torch.__version__}{suffix}"


def _import_xformers() -> Tuple[object, Optional[str], Optional[str]]:
    """Import ``xformers.ops`` once, quietly → (module or None, import error, kernel-load note)."""
    global _xformers_state
    if _xformers_state is None:
        with _quiet_xformers():
            try:
                import xformers.ops as xops
                from xformers.ops import fmha  # noqa: F401 - the attention biases live here
            except ModuleNotFoundError:
                _xformers_state = (None, "xformers not installed", None)
            except Exception as exc:  # noqa: BLE001 - a broken install is "unavailable", not fatal
                _xformers_state = (None, f"xformers failed to import: {_first_line(exc)}", None)
            else:
                _xformers_state = (xops, None, _kernel_load_note())
        logger.debug("xformers import: %s", _xformers_state[1] or _xformers_state[2] or "ok")
    return _xformers_state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _xformers_disabled() -> bool:
    return os.environ.get("XFORMERS_DISABLED", "").strip() not in ("", "0")


def _probe_xformers(xops, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """Probe once per (device, dtype); None if xformers ran there, else why not."""
    key = (str(device), dtype)
    if key not in _probe_cache:
        # eager even under torch.compile; disable() applied here so dynamo is imported lazily
        _probe_cache[key] = torch.compiler.disable(_run_probe)(xops, device, dtype)
    return _probe_cache[key]


def _run_probe(xops, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """A tiny forward+backward ``memory_efficient_attention`` on (device, dtype)."""
    try:
        with _quiet_xformers(), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            x = torch.randn(1, 16, 2, 64, device=device, dtype=dtype, requires_grad=True)
            xops.memory_efficient_attention(x, x, x).sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure means "no kernel here"
        return f"no xformers kernel for {device.type}/{_dtype_name(dtype)} ({_why(exc)})"
    return None


def _why(exc: BaseException, limit: int = 3) -> str:
    """Short reason from an exception; for xformers' "No operator found" the distinct causes."""
    causes: List[str] = []
    collecting = False
    for line in str(exc).splitlines():
        if line.rstrip().endswith("is not supported because:"):
            collecting = True
        elif collecting and line.startswith((" ", "\t")) and line.strip():
            if line.strip() not in causes:
                causes.append(line.strip())
        else:
            collecting = False
    return "; ".join(causes[:limit]) if causes else _first_line(exc)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def unavailable_reason(backend: str, device: DeviceLike, dtype: torch.dtype) -> Optional[str]:
    """Why ``backend`` cannot run on (device, dtype), or None when it can."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}: "
                         f"expected one of {', '.join(BACKENDS)}")
    if backend != "xformers":
        return None
    if _xformers_disabled():
        return "xformers disabled by XFORMERS_DISABLED"
    xops, error, note = _import_xformers()
    if xops is None:
        return error
    device = torch.device(device)
    if device.type != "cuda":
        reason = f"xformers has no kernels for {device.type} tensors"
    elif not torch.cuda.is_available():
        reason = "no CUDA device"
    else:
        reason = _probe_xformers(xops, device, dtype)
    if reason is not None and note is not None:
        reason = f"{reason}; {note}"
    return reason


def available_backends(device: DeviceLike, dtype: torch.dtype) -> List[str]:
    """Backends that can run on (device, dtype), in ``auto``'s order of preference."""
    return [name for name in BACKENDS if unavailable_reason(name, device, dtype) is None]


def _select_backend(q: torch.Tensor) -> str:
    requested = requested_backend()
    if requested == "auto":
        half_cuda = q.is_cuda and q.dtype in _HALF
        if half_cuda and unavailable_reason("xformers", q.device, q.dtype) is None:
            return "xformers"
        return "sdpa"
    if requested == "xformers":
        reason = unavailable_reason("xformers", q.device, q.dtype)
        if reason is not None:
            raise RuntimeError(f"{ENV_VAR}=xformers, but xformers cannot run here: {reason}")
    return requested


def attention_backend(q: Optional[torch.Tensor] = None) -> str:
    """Name of the backend :func:`attention` would use for ``q``.

    Without ``q``, ``auto`` reports ``sdpa`` (the choice for a tensor of unknown device/dtype).
    Raises like :func:`attention` for an unknown value or a forced backend that cannot run.
    """
    if q is None:
        requested = requested_backend()
        return "sdpa" if requested == "auto" else requested
    return _select_backend(q)


def _announce(backend: str, q: torch.Tensor) -> None:
    key = (backend, q.device.type, q.dtype)
    if key not in _announced:
        _announced.add(key)
        logger.info("attention backend: %s (device=%s, dtype=%s)", backend, q.device.type,
                    _dtype_name(q.dtype))


# ----------------------------------------------------------------------------- masks
def _causal_keep(lq: int, lk: int, device: torch.device) -> torch.Tensor:
    """(Lq, Lk) bool, True = attend; bottom-right aligned (the usual triangle when Lq == Lk)."""
    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril(diagonal=lk - lq)


def merge_masks(attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                is_causal: bool, q: torch.Tensor, k: torch.Tensor) -> Optional[torch.Tensor]:
    """Combine masks into None, a bool mask (True = attend) or an additive float mask.

    q: (B, H, Lq, D), k: (B, H, Lk, D); the result broadcasts to (B, H, Lq, Lk).
    """
    keep = _causal_keep(q.shape[-2], k.shape[-2], q.device) if is_causal else None
    if key_padding_mask is not None:
        not_pad = ~key_padding_mask[:, None, None, :]
        keep = not_pad if keep is None else keep & not_pad
    if attn_mask is None:
        return keep
    if attn_mask.dtype == torch.bool:
        return attn_mask if keep is None else attn_mask & keep
    return attn_mask if keep is None else attn_mask.masked_fill(~keep, float("-inf"))


def _dense_bias(mask: torch.Tensor, shape: Tuple[int, int, int, int],
                dtype: torch.dtype) -> torch.Tensor:
    """A bool/float mask → additive bias expanded to ``shape`` (B, H, Lq, Lk), aligned strides."""
    b, h, lq, lk = shape
    mask4 = mask.reshape((1,) * (4 - mask.ndim) + tuple(mask.shape))
    rows_b, rows_h = (b if mask4.shape[0] != 1 else 1), (h if mask4.shape[1] != 1 else 1)
    padded = -(-lk // _BIAS_ALIGN) * _BIAS_ALIGN
    bias = torch.zeros(rows_b, rows_h, lq, padded, dtype=dtype, device=mask.device)[..., :lk]
    if mask.dtype == torch.bool:
        bias.masked_fill_(~mask4, float("-inf"))
    else:
        bias.copy_(mask4.to(dtype).expand_as(bias))
    return bias.expand(b, h, lq, lk)


def _xformers_bias(attn_mask: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor],
                   is_causal: bool, q: torch.Tensor, k: torch.Tensor):
    """The ``attn_bias`` for xformers; q (B, H, Lq, D), k (B, H, Lk, D)."""
    from xformers.ops import fmha

    if attn_mask is None and key_padding_mask is None:
        if not is_causal:
            return None
        if q.shape[-2] == k.shape[-2]:
            return fmha.attn_bias.LowerTriangularMask()
        return fmha.attn_bias.LowerTriangularFromBottomRightMask()
    mask = merge_masks(attn_mask, key_padding_mask, is_causal, q, k)
    b, h, lq, _ = q.shape
    return _dense_bias(mask, (b, h, lq, k.shape[-2]), q.dtype)


# ----------------------------------------------------------------------------- kernels
def math_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Reference softmax(q kᵀ / √D + mask) v in float32.

    q (…, Lq, D), k/v (…, Lk, D), mask bool (True = attend) or additive → (…, Lq, D).
    """
    scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: Optional[torch.Tensor],
          key_padding_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
    plain = not is_causal or q.shape[-2] == k.shape[-2]  # SDPA's is_causal is top-left aligned
    if attn_mask is None and key_padding_mask is None and plain:
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    mask = merge_masks(attn_mask, key_padding_mask, is_causal, q, k)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _xformers_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   bias) -> Optional[torch.Tensor]:
    """memory_efficient_attention on (B, L, H, D) tensors; None if no operator fits (auto only)."""
    xops = _import_xformers()[0]
    try:
        return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
    except NotImplementedError as exc:  # the dispatcher found no operator for these inputs
        if requested_backend() == "xformers":
            raise
        key = (q.device.type, q.dtype, type(bias).__name__)
        if key not in _xformers_fallbacks:
            _xformers_fallbacks.add(key)
            logger.debug("xformers has no operator for these inputs, using sdpa: %s", _why(exc))
        return None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              attn_mask: Optional[torch.Tensor] = None,
              key_padding_mask: Optional[torch.Tensor] = None,
              is_causal: bool = False) -> torch.Tensor:
    """Scaled dot-product attention (scale 1/√D, no dropout).

    Args:
        q: (B, H, Lq, D); k, v: (B, H, Lk, D). Lq and Lk may differ (cross-attention).
        attn_mask: bool (True = attend) or additive float, broadcastable to (B, H, Lq, Lk).
        key_padding_mask: (B, Lk) bool, True marks padding keys to ignore.
        is_causal: query i sees keys j ≤ i + Lk − Lq (plain causal when Lq == Lk).
    Returns:
        (B, H, Lq, D)
    """
    if torch.compiler.is_compiling():
        # Inside torch.compile the call is traced to SDPA (which the compiler fuses); the
        # per-call backend choice and its log line would break the graph.
        return _sdpa(q, k, v, attn_mask, key_padding_mask, is_causal)
    backend = _select_backend(q)
    if backend == "xformers":
        bias = _xformers_bias(attn_mask, key_padding_mask, is_causal, q, k)
        out = _xformers_call(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), bias)
        if out is not None:
            _announce(backend, q)
            return out.transpose(1, 2)
        backend = "sdpa"
    _announce(backend, q)
    if backend == "sdpa":
        return _sdpa(q, k, v, attn_mask, key_padding_mask, is_causal)
    return math_attention(q, k, v, mask=merge_masks(attn_mask, key_padding_mask, is_causal, q, k))


# ----------------------------------------------------------------------------- variable length
def pack(tensors: Sequence[torch.Tensor]) -> Tuple[torch.Tensor, List[int]]:
    """Concatenate sequences [(L_i, H, D)] → (packed (1, ΣL, H, D), seqlens [L_i])."""
    if not tensors:
        raise ValueError("pack() needs at least one tensor")
    seqlens = [int(t.shape[0]) for t in tensors]
    return torch.cat(list(tensors), dim=0).unsqueeze(0), seqlens


def unpack(packed: torch.Tensor, seqlens: Sequence[int]) -> List[torch.Tensor]:
    """Split (1, ΣL, H, D) or (ΣL, H, D) back into [(L_i, H, D)] (views)."""
    flat = packed[0] if packed.ndim == 4 else packed
    if flat.shape[0] != sum(seqlens):
        raise ValueError(f"packed length {flat.shape[0]} != sum of seqlens {sum(seqlens)}")
    return list(flat.split(list(seqlens), dim=0))


def _check_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  q_lens: Tuple[int, ...], kv_lens: Tuple[int, ...]) -> None:
    if q.ndim != 4 or q.shape[0] != 1 or k.ndim != 4 or k.shape[0] != 1 or v.shape != k.shape:
        raise ValueError("attention_varlen expects q (1, ΣLq, H, D) and k, v (1, ΣLk, H, D); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if len(q_lens) != len(kv_lens) or not q_lens:
        raise ValueError(f"need one kv length per query segment: {len(q_lens)} vs {len(kv_lens)}")
    if min(q_lens) < 1 or min(kv_lens) < 1:
        raise ValueError("segment lengths must be positive")
    if sum(q_lens) != q.shape[1] or sum(kv_lens) != k.shape[1]:
        raise ValueError(f"seqlens sum to {sum(q_lens)} / {sum(kv_lens)} but q has {q.shape[1]} "
                         f"and k has {k.shape[1]} tokens")


@functools.lru_cache(maxsize=64)
def _block_diagonal_keep(q_lens: Tuple[int, ...], kv_lens: Tuple[int, ...],
                         device: torch.device) -> torch.Tensor:
    """(ΣLq, ΣLk) bool, True where query and key belong to the same segment."""
    with torch.inference_mode(False), torch.no_grad():
        segments = torch.arange(len(q_lens), device=device)
        q_ids = segments.repeat_interleave(torch.tensor(q_lens, device=device))
        kv_ids = segments.repeat_interleave(torch.tensor(kv_lens, device=device))
        return q_ids[:, None] == kv_ids[None, :]


@functools.lru_cache(maxsize=64)
def _block_diagonal_bias(q_lens: Tuple[int, ...], kv_lens: Tuple[int, ...], device: torch.device):
    from xformers.ops import fmha

    return fmha.attn_bias.BlockDiagonalMask.from_seqlens(list(q_lens), list(kv_lens), device=device)


def attention_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_seqlens: Sequence[int],
                     kv_seqlens: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Attention over packed sequences; segment i of q attends only to segment i of k/v.

    Args:
        q: (1, ΣLq, H, D) packed queries (see :func:`pack`); k, v: (1, ΣLk, H, D).
        q_seqlens: [Lq_i]; kv_seqlens: [Lk_i] for cross-attention (default: ``q_seqlens``).
    Returns:
        (1, ΣLq, H, D)
    """
    q_lens = tuple(int(n) for n in q_seqlens)
    kv_lens = q_lens if kv_seqlens is None else tuple(int(n) for n in kv_seqlens)
    _check_varlen(q, k, v, q_lens, kv_lens)
    backend = _select_backend(q)
    if backend == "xformers":
        out = _xformers_call(q, k, v, _block_diagonal_bias(q_lens, kv_lens, q.device))
        if out is not None:
            _announce(backend, q)
            return out
        backend = "sdpa"
    _announce(backend, q)
    keep = _block_diagonal_keep(q_lens, kv_lens, q.device)
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if backend == "sdpa":
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keep)
    else:
        out = math_attention(qh, kh, vh, mask=keep)
    return out.transpose(1, 2)
