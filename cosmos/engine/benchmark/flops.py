"""FLOP counting with fvcore: **2 FLOPs per multiply-add** of matrix products, convolutions and
attention (q·kᵀ and attention·v over the full Lq × Lk, masked or causal or not); elementwise work
(norms, activations, softmax) is not counted. A training step is counted as 3 × forward for
modules that train and 1 × forward for modules with frozen parameters (the EMA teacher: no
backward).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from cosmos.engine.benchmark.batches import tensor_list
from cosmos.utils.errors import CosmosError

FLOP_CONVENTION = ("2 FLOPs per multiply-add of matmuls, convolutions and attention "
                   "(full Lq x Lk); norms, activations and softmax not counted; "
                   "training = 3 x forward, frozen modules (EMA teacher) 1 x forward")


@dataclass
class FlopReport:
    """Forward FLOPs of one traced batch of ``batch`` pairs, by top-level module."""

    batch: int
    forward: Dict[str, float]   # module → forward FLOPs of the traced batch; "(meta-arch)": glue
    multiplier: Dict[str, int]      # module → 3 (trained) or 1 (frozen: forward only)
    uncounted_ops: List[str] = field(default_factory=list)

    @property
    def forward_per_pair(self) -> float:
        return sum(self.forward.values()) / self.batch

    @property
    def train_per_pair(self) -> float:
        """Training FLOPs per pair: Σ multiplier × forward / batch."""
        return sum(self.multiplier[k] * v for k, v in self.forward.items()) / self.batch

    def as_dict(self) -> Dict[str, Any]:
        return dict(batch=self.batch, convention=FLOP_CONVENTION,
                    forward_gflop_per_pair={k: v / self.batch / 1e9
                                            for k, v in self.forward.items()},
                    multiplier=dict(self.multiplier),
                    forward_gflop_per_pair_total=self.forward_per_pair / 1e9,
                    train_gflop_per_pair=self.train_per_pair / 1e9,
                    uncounted_ops=list(self.uncounted_ops))


def _shape(value: Any) -> List[int]:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(value)
    if shape is None:
        raise ValueError("a traced tensor without a complete shape")
    return list(shape)


def _matmul_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """aten::matmul with broadcasting batch dims and 1-D operands."""
    a, b = _shape(inputs[0]), _shape(inputs[1])
    a2 = [1] + a if len(a) == 1 else a
    b2 = b + [1] if len(b) == 1 else b
    batch = torch.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
    return math.prod(batch) * a2[-2] * a2[-1] * b2[-1]


def _baddbmm_macs(inputs: List[Any], outputs: List[Any]) -> int:
    b, n, k = _shape(inputs[1])
    return b * n * k * _shape(inputs[2])[-1]


def _sdpa_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """SDPA with q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev): Lq·Lk·(E + Ev) per batch·head."""
    q, k, v = (_shape(x) for x in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def _bmhk_attention_macs(inputs: List[Any], outputs: List[Any]) -> int:
    """xformers / flash layout: q (B, M, H, K) or packed (ΣM, H, K), k (…, N, H, K),
    v (…, N, H, Kv); a packed (block-diagonal) call is counted as one dense ΣM × ΣN product
    (an upper bound)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    if len(q) == 3:
        q, k, v = [1] + q, [1] + k, [1] + v
    b, m, h, kd = q
    return b * h * m * k[1] * (kd + v[-1])


_ATTENTION_OPS = {
    "aten::scaled_dot_product_attention": _sdpa_macs,
    "aten::_scaled_dot_product_flash_attention": _sdpa_macs,
    "aten::_scaled_dot_product_efficient_attention": _sdpa_macs,
    "aten::_scaled_dot_product_cudnn_attention": _sdpa_macs,
    "aten::_scaled_dot_product_flash_attention_for_cpu": _sdpa_macs,
    "xformers::efficient_attention_forward_cutlass": _bmhk_attention_macs,
    "xformers::efficient_attention_forward_ck": _bmhk_attention_macs,
    "xformers_flash::flash_fwd": _bmhk_attention_macs,
    "xformers_flash3::flash_fwd": _bmhk_attention_macs,
}


def _no_flops(inputs: List[Any], outputs: List[Any]) -> int:
    return 0


_IGNORED_OPS = ("aten::layer_norm", "aten::group_norm", "aten::batch_norm", "aten::instance_norm",
                "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::upsample_bicubic2d",
                "aten::adaptive_avg_pool2d", "aten::grid_sampler")
_COMPUTE_OP = re.compile(r"mm|matmul|conv|einsum|linear|attention|attn|flash", re.I)


def forward_flops(module: nn.Module, inputs: Tuple[torch.Tensor, ...]
                  ) -> Tuple[Dict[str, int], List[str]]:
    """FLOPs (2 per multiply-add) of ``module(*inputs)`` by module path ("" = total), and the
    traced ops that look like matrix work but have no handler (uncounted). Traces with fvcore
    under ``no_grad``; the module's mode and parameters are untouched."""
    try:
        with warnings.catch_warnings():  # fvcore's import warns about torch.jit.script
            warnings.simplefilter("ignore")
            from fvcore.nn import FlopCountAnalysis
    except ImportError:
        raise CosmosError("--flops needs fvcore (pip install fvcore)") from None
    analysis = FlopCountAnalysis(module, inputs)
    analysis.set_op_handle(**{name: _no_flops for name in _IGNORED_OPS})  # None would not
    # override fvcore's default handlers (norms, upsampling): count them as 0 explicitly
    analysis.set_op_handle(**_ATTENTION_OPS, **{"aten::matmul": _matmul_macs,
                                                "aten::baddbmm": _baddbmm_macs})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs = analysis.by_module()
        unsupported = analysis.unsupported_ops()
        extra = {n: _bmhk_attention_macs for n in unsupported
                 if re.search(r"xformers|flash", n) and re.search(r"fwd|forward", n)}
        if extra:  # an attention kernel not listed above: count it and trace again
            analysis.set_op_handle(**extra)
            macs, unsupported = analysis.by_module(), analysis.unsupported_ops()
    uncounted = sorted(n for n in unsupported if _COMPUTE_OP.search(n))
    return {k: 2 * int(v) for k, v in macs.items()}, uncounted


class _BatchForward(nn.Module):
    """Flat tensors → the batch dict → meta-arch → total loss (jit tracing takes tensors only)."""

    def __init__(self, meta_arch: nn.Module, batch: Dict[str, Any]) -> None:
        super().__init__()
        self.meta_arch = meta_arch
        self.layout: List[Tuple[str, str, Any]] = []
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                self.layout.append((key, "tensor", 1))
            elif tensor_list(value):
                self.layout.append((key, "list", len(value)))
            else:
                self.layout.append((key, "const", value))

    def flatten(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, ...]:
        flat: List[torch.Tensor] = []
        for key, kind, _ in self.layout:
            if kind == "tensor":
                flat.append(batch[key])
            elif kind == "list":
                flat.extend(batch[key])
        return tuple(flat)

    def forward(self, *flat: torch.Tensor) -> torch.Tensor:
        batch: Dict[str, Any] = {}
        i = 0
        for key, kind, extra in self.layout:
            if kind == "tensor":
                batch[key], i = flat[i], i + 1
            elif kind == "list":
                batch[key], i = list(flat[i:i + extra]), i + extra
            else:
                batch[key] = extra
        return self.meta_arch(batch)["loss"]


def _frozen(module: nn.Module) -> bool:
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def count_flops(meta_arch: nn.Module, batch: Dict[str, Any]) -> FlopReport:
    """Forward FLOPs of ``meta_arch(batch)`` by top-level child (plus "(meta-arch)" for ops of the
    meta-architecture itself), with each child's training multiplier (3, or 1 when frozen)."""
    wrapper = _BatchForward(meta_arch, batch)
    flops, uncounted = forward_flops(wrapper, wrapper.flatten(batch))
    forward: Dict[str, float] = {}
    multiplier: Dict[str, int] = {}
    for name, child in meta_arch.named_children():
        forward[name] = float(flops.get(f"meta_arch.{name}", 0))
        multiplier[name] = 1 if _frozen(child) else 3
    forward["(meta-arch)"] = float(flops.get("", 0)) - sum(forward.values())
    multiplier["(meta-arch)"] = 3
    size = int(batch.get("batch_size") or 0) or next(
        v.shape[0] for v in wrapper.flatten(batch))
    return FlopReport(size, forward, multiplier, uncounted)
