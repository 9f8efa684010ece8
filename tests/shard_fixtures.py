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
