"""The project's own iopath PathManager, with iopath's URL handlers registered.

``PathManager.open`` / ``get_local_path`` accept local paths, ``http://`` / ``https://`` /
``ftp://`` URLs (iopath's ``HTTPURLHandler``: downloaded once to iopath's cache, e.g. for
``train.init_checkpoint``) and OneDrive share links. Other storage (``s3://`` with
``iopath.common.s3.S3PathHandler``, a cluster's own scheme) is added with
``PathManager.register_handler(handler)`` in a project module that the config imports.

Training shards do not go through the cache: :mod:`cosmos.data.shard_sources` streams http(s)
and ``pipe:`` sources itself and opens any other URI with ``PathManager.open``.
"""
from __future__ import annotations

from iopath.common.file_io import HTTPURLHandler, OneDrivePathHandler
from iopath.common.file_io import PathManager as _PathManager

__all__ = ["PathManager"]

PathManager = _PathManager()
PathManager.register_handler(HTTPURLHandler())
PathManager.register_handler(OneDrivePathHandler())
