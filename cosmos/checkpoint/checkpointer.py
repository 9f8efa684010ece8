"""Checkpoints of a run directory: ``checkpoints/model_NNNNNNN.pth`` plus a ``last_checkpoint``
pointer, written atomically, the newest ``max_to_keep`` kept. Loading uses ``weights_only=True``.
Each checkpoint carries the model's metadata (see :mod:`cosmos.checkpoint.metadata`).
"""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from typing import Any, Dict, List, Mapping, Optional

import torch

from cosmos.checkpoint.metadata import META_KEY
from cosmos.utils.atomic import atomic_write, atomic_write_text
from cosmos.utils.errors import CheckpointError, one_line

logger = logging.getLogger(__name__)
_NAME = re.compile(r"^model_(\d{7,})\.pth$")


def load_checkpoint(path: str, map_location: str = "cpu") -> Dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; unreadable files raise a one-line error."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip files, unsafe globals …
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_reason(exc)}") from exc


def _load_reason(exc: Exception) -> str:
    """Why torch could not load a file, in one line. A refused pickled object keeps torch's
    reason (the global it refused); cosmos loads only tensors and plain containers."""
    text = str(exc)
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    if match:
        return (f"it holds a pickled Python object that loading with weights_only=True refuses "
                f"({match.group(1).strip()}); cosmos never runs code from a checkpoint: "
                "re-save the file as tensors and plain containers (a state dict)")
    return one_line(text) if text.strip() else type(exc).__name__


def _is_write_failure(exc: BaseException) -> bool:
    """An OSError, or torch's RuntimeError when its zip writer cannot write (a full disk)."""
    if isinstance(exc, OSError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("PytorchStreamWriter", "inline_container", "file write failed"))


def describe_write_failure(path: str, exc: BaseException) -> str:
    """One line: the file, the reason, and the free space left where it was written."""
    directory = os.path.dirname(os.path.abspath(path))
    if isinstance(exc, OSError):
        reason = exc.strerror or one_line(str(exc)) or type(exc).__name__
    else:
        reason = "the write failed (" + one_line(str(exc), 200) + ")"
    try:
        free = f"{shutil.disk_usage(directory).free / 2 ** 30:.2f} GiB free on {directory}"
    except OSError:
        free = f"free space on {directory} unknown"
    return f"cannot write {path}: {reason}; {free}"


class Checkpointer:
    """Saves and finds the training checkpoints of one run directory.

    ``metadata``: what the checkpoints hold (:func:`~cosmos.checkpoint.metadata.model_metadata`),
    saved in each one under ``meta``.
    """

    def __init__(self, save_dir: str, max_to_keep: Optional[int] = None, enabled: bool = True,
                 metadata: Optional[Mapping[str, Any]] = None) -> None:
        self.save_dir = save_dir
        self.max_to_keep = max_to_keep
        self.enabled = enabled
        self.metadata = dict(metadata) if metadata else None
        if enabled:
            os.makedirs(save_dir, exist_ok=True)
            self._remove_stale_temporaries()

    @property
    def pointer(self) -> str:
        return os.path.join(self.save_dir, "last_checkpoint")

    def path_for(self, step: int) -> str:
        return os.path.join(self.save_dir, f"model_{step:07d}.pth")

    def save(self, step: int, state: Dict[str, Any]) -> Optional[str]:
        """Write ``state`` as the checkpoint of ``step`` (atomic), then move the pointer."""
        if not self.enabled:
            return None
        path = self.path_for(step)
        if self.metadata is not None:
            state = {**state, META_KEY: self.metadata}
        try:
            atomic_write(path, lambda f: torch.save(state, f))
            atomic_write_text(self.pointer, os.path.basename(path) + "\n")
        except (OSError, RuntimeError) as exc:
            if not _is_write_failure(exc):
                raise
            previous = [p for p in self.all_checkpoints() if p != path]
            kept = (f"the previous checkpoint {os.path.basename(previous[-1])} is intact"
                    if previous else "no earlier checkpoint exists")
            raise CheckpointError(f"{describe_write_failure(path, exc)}; {kept}; free space "
                                  "(or move train.output_dir) and run again to resume") from exc
        logger.info("saved checkpoint %s", path)
        self._prune()
        return path

    def all_checkpoints(self) -> List[str]:
        """Complete checkpoint files, oldest first."""
        found = []
        for path in glob.glob(os.path.join(self.save_dir, "model_*.pth")):
            match = _NAME.match(os.path.basename(path))
            if match:
                found.append((int(match.group(1)), path))
        return [p for _, p in sorted(found)]

    def latest(self) -> Optional[str]:
        """The checkpoint to resume from: the pointer's target, else the newest file on disk."""
        if os.path.isfile(self.pointer):
            with open(self.pointer) as f:
                name = f.read().strip()
            path = os.path.join(self.save_dir, name)
            if name and os.path.isfile(path):
                return path
            logger.warning("last_checkpoint points to missing %s; using the newest file instead",
                           name)
        existing = self.all_checkpoints()
        return existing[-1] if existing else None

    def load_latest(self) -> Optional[Dict[str, Any]]:
        """Load the newest readable checkpoint; a corrupt newest one falls back to older ones."""
        latest = self.latest()
        if latest is None:
            return None
        candidates = [latest] + [p for p in reversed(self.all_checkpoints()) if p != latest]
        for i, path in enumerate(candidates):
            try:
                state = load_checkpoint(path)
                logger.info("resuming from %s", path)
                return state
            except CheckpointError as exc:
                if i + 1 == len(candidates):
                    raise
                logger.warning("%s; trying an older checkpoint", exc)
        return None

    def _prune(self) -> None:
        if not self.max_to_keep:
            return
        for path in self.all_checkpoints()[: -self.max_to_keep]:
            os.remove(path)

    def _remove_stale_temporaries(self) -> None:
        """Temporaries left by a save that was killed halfway are never valid checkpoints."""
        for path in glob.glob(os.path.join(self.save_dir, ".*.tmp")):
            os.remove(path)
