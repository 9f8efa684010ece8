"""Session fixtures shared by the test modules."""
from __future__ import annotations

import pytest

from tests.shard_fixtures import write_scene_shards


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> str:
    """Brace URL of 4 shards x 8 synthetic scenes (32 px), written once per test session."""
    directory = tmp_path_factory.mktemp("synthetic_shards")
    write_scene_shards(str(directory), num_shards=4, per_shard=8)
    return f"{directory}/s-{{000..003}}.tar"
