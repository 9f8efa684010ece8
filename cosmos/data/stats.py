"""Counting bad data, reporting it as metrics, and stopping when there is too much of it."""
from __future__ import annotations

from typing import Dict, Iterable, Mapping, Optional

from cosmos.utils.errors import DataError

# Counters that are samples lost (they enter the bad fraction); shard-level events are reported
# but a shard holds an unknown number of samples, so they do not.
SAMPLE_REASONS = ("corrupt_image", "missing_image", "empty_caption", "bad_json", "bad_transform")
SHARD_REASONS = ("unreadable_shard", "truncated_shard")


def new_counters() -> Dict[str, object]:
    """Cumulative counters of one stream: ``samples`` read fine, one count per bad reason."""
    return {"samples": 0, **{r: 0 for r in SAMPLE_REASONS + SHARD_REASONS}, "last_bad": ""}


def merge(counters: Iterable[Mapping[str, object]]) -> Dict[str, object]:
    """Sum the numeric counters of several streams; keep the latest non-empty ``last_bad``."""
    total = new_counters()
    for c in counters:
        for key, value in c.items():
            if key == "last_bad":
                total["last_bad"] = value or total["last_bad"]
            else:
                total[key] = int(total.get(key, 0)) + int(value)
    return total


def bad_samples(counters: Mapping[str, object]) -> int:
    return sum(int(counters.get(r, 0)) for r in SAMPLE_REASONS)


def as_metrics(counters: Mapping[str, object]) -> Dict[str, float]:
    """``data/*`` scalars for the metrics log: good and bad counts, the bad fraction, each
    reason."""
    good, bad = int(counters.get("samples", 0)), bad_samples(counters)
    out = {"data/samples": float(good), "data/bad_samples": float(bad),
           "data/bad_fraction": bad / max(good + bad, 1)}
    for reason in SAMPLE_REASONS + SHARD_REASONS:
        out[f"data/{reason}"] = float(counters.get(reason, 0))
    return out


def check_bad_fraction(counters: Mapping[str, object], max_bad_fraction: float,
                       min_samples: int, where: str) -> None:
    """Raise :class:`DataError` once at least ``min_samples`` were read and too many were bad."""
    good, bad = int(counters.get("samples", 0)), bad_samples(counters)
    seen = good + bad
    if seen < min_samples or seen == 0 or bad / seen <= max_bad_fraction:
        return
    reasons = ", ".join(f"{r}={counters[r]}" for r in SAMPLE_REASONS + SHARD_REASONS
                        if counters.get(r))
    last = f"; last: {counters['last_bad']}" if counters.get("last_bad") else ""
    raise DataError(f"{where}: {bad} of {seen} samples were bad ({bad / seen:.1%} > "
                    f"max_bad_fraction {max_bad_fraction:.1%}): {reasons}{last}")


def count_bad(counters: Dict[str, object], reason: str, detail: Optional[str] = None) -> None:
    counters[reason] = int(counters.get(reason, 0)) + 1
    if detail:
        counters["last_bad"] = f"{reason} {detail}"[:300]
