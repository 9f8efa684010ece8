"""Hand-built tar shards for the reader tests: good samples and each kind of bad one."""
from __future__ import annotations

import io
import json
import tarfile
from typing import Dict, List, Sequence, Tuple

from cosmos.data.synthetic import SyntheticScenes

Sample = Tuple[str, Dict[str, bytes]]


def write_tar(path: str, samples: Sequence[Sample]) -> str:
    """Write ``[(key, {ext: bytes})]`` as consecutive members ``key.ext``."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def scene_samples(start: int, count: int, image_size: int = 32) -> List[Sample]:
    """Synthetic scenes as shard samples: PNG image, raw caption as txt, all captions as json."""
    ds = SyntheticScenes(num_samples=start + count, image_size=image_size, split="train")
    out = []
    for i in range(start, start + count):
        item = ds[i]
        caps = item["captions"]
        meta = {"raw_caption": caps["raw"], "short": caps["short"], "long": caps["long"],
                "caption": " ".join(caps["long"])}  # PixelProse's field: one unsplit caption
        out.append((item["key"], {"png": png_bytes(item["image"]), "txt": caps["raw"].encode(),
                                  "json": json.dumps(meta).encode()}))
    return out


def write_scene_shards(directory: str, num_shards: int, per_shard: int,
                       image_size: int = 32, prefix: str = "s") -> List[str]:
    paths = []
    for s in range(num_shards):
        paths.append(write_tar(f"{directory}/{prefix}-{s:03d}.tar",
                               scene_samples(s * per_shard, per_shard, image_size)))
    return paths


def serve_directory(directory: str):
    """An HTTP server on 127.0.0.1 (free port, daemon thread) serving ``directory``.

    Besides plain files (a missing one is a 404) it serves two broken transfers:
    ``/cut/NAME`` announces NAME's full length, sends half of it and closes the connection;
    ``/gate/NAME`` sends half, then waits for ``server.gate`` (a ``threading.Event``) before the
    rest. Returns the server; ``server.url`` is its base URL, ``server.requests`` the paths asked
    for; call ``server.shutdown()`` when done.
    """
    import functools
    import http.server
    import os
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self.server.requests.append(self.path)
            for mode in ("cut", "gate"):
                if self.path.startswith(f"/{mode}/"):
                    return self._half(mode, self.path[len(mode) + 2:])
            return super().do_GET()

        def _half(self, mode: str, name: str) -> None:
            path = os.path.join(directory, name)
            if not os.path.isfile(path):
                return self.send_error(404)
            with open(path, "rb") as f:
                data = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if mode == "gate":
                self.server.gate.wait(timeout=60)
                self.wfile.write(data[len(data) // 2:])
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=directory))
    server.daemon_threads = True
    server.requests, server.gate = [], threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
