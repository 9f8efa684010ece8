"""User-facing errors: one line that says what was wrong and where.

Entry points catch :class:`CosmosError` and print ``error: <message>`` without a traceback
(set ``COSMOS_TRACEBACK=1`` to see it).
"""
from __future__ import annotations


class CosmosError(Exception):
    """An error caused by user input (config, override, path, checkpoint), not by a bug."""


class ConfigError(CosmosError):
    """A config file or override is invalid."""


class UnknownComponentError(CosmosError, KeyError):
    """A registry name that nobody registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(CosmosError):
    """A checkpoint is missing, unreadable or incompatible."""


class NonFiniteLossError(CosmosError, FloatingPointError):
    """A loss term became NaN or Inf. ``weights_finite``: the model still holds the last good
    step's weights (the check ran at the bad step itself, before its optimizer update)."""

    def __init__(self, message: str, weights_finite: bool = True) -> None:
        super().__init__(message)
        self.weights_finite = weights_finite


class DataError(CosmosError):
    """A data source is missing, malformed, or too much of it is bad."""


class BadSampleError(Exception):
    """One sample cannot be used (corrupt image, empty caption); readers skip and count it.

    ``reason`` is a short stable tag used as the metrics counter name (``corrupt_image``,
    ``empty_caption``, ``missing_image``, ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def one_line(text: str, limit: int = 600) -> str:
    """``text`` as one line for an error message: its lines joined, terminal escapes dropped,
    and (only when longer than ``limit``) cut at the last sentence end before it, never
    mid-word."""
    import re

    flat = " ".join(part.strip() for part in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
                    if part.strip())
    if len(flat) <= limit:
        return flat
    head = flat[:limit]
    cut = max(head.rfind(". "), head.rfind("; "))
    if cut < limit // 2:
        cut = head.rfind(" ")
    return head[: cut + 1].rstrip() + " …"
