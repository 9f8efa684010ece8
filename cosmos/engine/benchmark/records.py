"""What a step benchmark runs and measures: settings, result rows, the report, and the summaries
shared by every timed setting (pairs/s, MFU, an error's first line)."""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

import torch

from cosmos.engine.benchmark.flops import FlopReport
from cosmos.engine.benchmark.step_timer import PhaseReport
from cosmos.utils.distributed import get_world_size

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class StepSettings:
    """What one ``step`` benchmark runs; ``dtype`` applies on CUDA (CPU trains in fp32)."""

    device: torch.device
    dtype: str = "bf16"
    batch: int = 128
    steps: int = 20
    warmup: int = 5
    phase_steps: int = 3
    data: str = "random"
    text_lengths: str = "template"
    compile: bool = False
    flops: bool = False
    flops_batch: Optional[int] = None
    peak_tflops: float = 989.0

    @property
    def amp(self) -> str:
        return self.dtype if self.device.type == "cuda" else "fp32"


@dataclass
class StepResult:
    """One timed training step setting; status is ok | oom | error | skipped."""

    setting: str
    status: str
    pairs_per_s: Optional[float] = None
    ms_mean: Optional[float] = None
    ms_median: Optional[float] = None
    peak_gib: Optional[float] = None
    gflop_per_pair: Optional[float] = None
    mfu: Optional[float] = None
    data_wait_ms: Optional[float] = None
    reason: str = ""


@dataclass
class StepReport:
    """The rows of one ``step`` run (ours first), with the phases and FLOPs of ours."""

    results: List[StepResult]
    phases: Optional[PhaseReport] = None
    flops: Optional[FlopReport] = None
    compiled: List[str] = field(default_factory=list)
    flops_error: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return dict(results=[asdict(r) for r in self.results],
                    phases=asdict(self.phases) if self.phases else None,
                    flops=self.flops.as_dict() if self.flops else None,
                    flops_error=self.flops_error or None, compiled_towers=list(self.compiled))


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters of it), for a failed row."""
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"


def mfu(gflop_per_pair: Optional[float], pairs_per_s: Optional[float],
        settings: StepSettings) -> Optional[float]:
    """Model-FLOPs utilisation against ``settings.peak_tflops``; None off CUDA or without FLOPs."""
    if settings.device.type != "cuda" or not gflop_per_pair or not pairs_per_s:
        return None
    return gflop_per_pair * pairs_per_s / (settings.peak_tflops * 1e3)


def summarize(setting: str, times: List[float], batch: int, peak: Optional[int]) -> StepResult:
    """An ok row from per-step milliseconds: pairs/s over all processes, mean and median ms,
    peak memory (bytes → GiB)."""
    mean = sum(times) / len(times)
    return StepResult(setting, "ok", batch * get_world_size() * 1e3 / mean, mean,
                      statistics.median(times), None if peak is None else peak / 2**30)
