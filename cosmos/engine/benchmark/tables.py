"""The benchmarks' results as markdown tables (what ``tools/benchmark.py`` prints)."""
from __future__ import annotations

from typing import Dict, List, Optional

from cosmos.engine.benchmark.records import StepReport
from cosmos.engine.benchmark.step_timer import OTHER
from cosmos.engine.benchmark.towers import TowerResult


def fmt(value: Optional[float], digits: int = 1) -> str:
    """A number with thousands separators, "-" for none."""
    return "-" if value is None else f"{value:,.{digits}f}"


def gib(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def gflop(value: Optional[float]) -> str:
    return "-" if value is None else (f"{value:,.1f}" if value >= 10 else f"{value:.3g}")


def pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def towers_markdown(results: List[TowerResult], header: str) -> str:
    """The results as a markdown table plus one line per skipped backend."""
    lines = [header, "", "| tower | backend | ms/step | samples/s | peak mem (MiB) |",
             "|---|---|---:|---:|---:|"]
    for r in results:
        if r.status == "ok":
            lines.append(f"| {r.tower} | {r.backend} | {fmt(r.ms_per_step, 2)} "
                         f"| {fmt(r.samples_per_s)} | {fmt(r.peak_mem_mib, 0)} |")
        elif r.status != "skipped":
            lines.append(f"| {r.tower} | {r.backend} | {r.status}: {r.reason} | - | - |")
    skipped: Dict[str, str] = {}
    for r in results:
        if r.status == "skipped":
            skipped.setdefault(r.backend, r.reason)
    if skipped:
        lines.append("")
        lines.extend(f"- skipped {name}: {reason}" for name, reason in skipped.items())
    return "\n".join(lines)


def step_markdown(report: StepReport, header: str, ratios: Dict[str, float]) -> str:
    """Results, ratios, phase and FLOP tables as markdown."""
    lines = [header, "", "| setting | pairs/s | ms/step (mean) | ms/step (median) | peak GiB "
             "| GFLOP/pair | MFU |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report.results:
        if r.status == "ok":
            lines.append(f"| {r.setting} | {fmt(r.pairs_per_s)} | {fmt(r.ms_mean, 2)} "
                         f"| {fmt(r.ms_median, 2)} | {gib(r.peak_gib)} "
                         f"| {gflop(r.gflop_per_pair)} | {pct(r.mfu)} |")
        else:
            lines.append(f"| {r.setting} | {r.status}: {r.reason} | - | - | {gib(r.peak_gib)} "
                         "| - | - |")
    for r in report.results:
        if r.data_wait_ms is not None:
            lines.append(f"\n- data wait ({r.setting}): {r.data_wait_ms:.2f} ms/step")
    if ratios:
        lines.append("")
        lines.extend(f"- pairs/s ratio, ours / {name}: {ratio:.2f}x"
                     for name, ratio in ratios.items())
    phases = report.phases
    if phases is not None:
        lines += ["", f"#### phases: mean of {phases.steps} instrumented step(s), "
                      f"{phases.step_ms:.2f} ms/step with the timers", "",
                  "| phase | ms | share |", "|---|---:|---:|"]
        for name, ms in phases.ms.items():
            label = "other (data, schedule, NaN guard, clamp, timers)" if name == OTHER else name
            lines.append(f"| {label} | {ms:.2f} | {100 * ms / phases.step_ms:.1f}% |")
    flops = report.flops
    if flops is not None:
        lines += ["", f"#### forward FLOPs by module (fvcore, traced batch {flops.batch}; "
                      "2 FLOPs per multiply-add)", "",
                  "| module | forward GFLOP/pair | in the training step |", "|---|---:|---|"]
        for name, value in flops.forward.items():
            times = "1x (frozen: forward only)" if flops.multiplier[name] == 1 else "3x"
            lines.append(f"| {name} | {gflop(value / flops.batch / 1e9)} | {times} |")
        lines.append(f"| **training step** | **{gflop(flops.train_per_pair / 1e9)}** "
                     f"(forward {gflop(flops.forward_per_pair / 1e9)}) | |")
        if flops.uncounted_ops:
            lines.append(f"\n- uncounted ops (no FLOP handler): {', '.join(flops.uncounted_ops)}")
    if report.flops_error:
        lines.append(f"\n- FLOP count failed: {report.flops_error}")
    return "\n".join(lines)
