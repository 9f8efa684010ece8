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
    """A loss term became NaN or Inf."""
