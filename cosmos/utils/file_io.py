"""The project's own iopath PathManager (local paths plus any handler a user registers)."""
from __future__ import annotations

from iopath.common.file_io import PathManager as _PathManager

PathManager = _PathManager()
