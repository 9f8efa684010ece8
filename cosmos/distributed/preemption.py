"""Stop at a step boundary when the scheduler says so (preemption, time limit, Ctrl-C, kill).

A signal handler only records the request. The trainer asks :func:`stop_requested` after each
step, agrees on it across ranks (one ``all_reduce`` shared with the logged losses), saves a
checkpoint on every rank's same step and raises :class:`TrainingInterrupted`. The entry point then
requeues (SLURM, through submitit's own handler) or exits, and the next start resumes from the
run directory's last checkpoint.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Callable, Dict, Iterable, Optional

logger = logging.getLogger(__name__)

# What a plain run treats as "save and stop": scheduler terminations, Ctrl-C, SLURM's warnings.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)

_requested: Optional[int] = None
_previous: Dict[int, object] = {}


class TrainingInterrupted(Exception):
    """Training stopped early on a signal after saving the checkpoint of step ``iter``."""

    def __init__(self, iter: int, signum: int) -> None:
        super().__init__(f"training interrupted by {signal_name(signum)} after step {iter}; "
                         "its checkpoint is saved and the run resumes from it")
        self.iter, self.signum = iter, signum


def signal_name(signum: Optional[int]) -> str:
    try:
        return signal.Signals(signum).name
    except (TypeError, ValueError):
        return str(signum)


def _record(signum: int, frame) -> None:  # signal handler: no I/O beyond one log line
    """First signal: request a stop. The same signal again: act as if no handler were set."""
    global _requested
    if _requested == signum and frame is not None:
        default = signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        signal.signal(signum, default)
        os.kill(os.getpid(), signum)
        return
    if _requested is None:
        logger.warning("caught %s: stopping after the current step (send it again to stop now)",
                       signal_name(signum))
    _requested = signum


def install(signals: Iterable[int]) -> None:
    """Make ``signals`` request a stop instead of their current action (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in signals:
        if signum not in _previous:
            _previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _record)


def previous_handler(signum: int) -> Optional[Callable]:
    """The handler :func:`install` replaced (e.g. submitit's checkpoint-and-requeue)."""
    handler = _previous.get(signum)
    return handler if callable(handler) else None


def uninstall() -> None:
    """Put back the handlers :func:`install` replaced and forget any request."""
    global _requested
    for signum, handler in _previous.items():
        signal.signal(signum, handler)
    _previous.clear()
    _requested = None


def stop_requested() -> Optional[int]:
    """The signal number that asked to stop, or None."""
    return _requested


def request_stop(signum: int = signal.SIGUSR2) -> None:
    """Ask for a stop as if ``signum`` had arrived (tests, hooks)."""
    _record(signum, None)


def clear() -> None:
    global _requested
    _requested = None
