"""Timestamps on the device's timeline, timing of repeated calls, and memory release."""
from __future__ import annotations

import gc
import time
from typing import Any, Callable, List

import torch


class Clock:
    """Timestamps on the device's timeline: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def ms(self, start: Any, end: Any) -> float:
        """Milliseconds from ``start`` to ``end`` (call :meth:`sync` first on a GPU)."""
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3


def time_calls(step: Callable[[], None], clock: Clock, steps: int, warmup: int) -> List[float]:
    """Milliseconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    marks = [clock.mark()]
    for _ in range(steps):
        step()
        marks.append(clock.mark())
    clock.sync()
    return [clock.ms(a, b) for a, b in zip(marks, marks[1:])]


def release(device: torch.device) -> None:
    """Free what can be freed and restart the peak-memory counter."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
