"""The platform's own image (docker-compose.yml, worker hosts) builds offline and works."""

import pytest

from arena.sandbox.containers import docker_client
from arena.tools import base_image

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]


def test_app_image_builds_and_migrates_a_database(tmp_path):
    tag = base_image.build_app(say=lambda _m: None)
    said: list[str] = []
    built = docker_client().images.get(tag).id
    assert base_image.build_app(say=said.append) == tag and said == [f"{tag} is up to date"]  # the same tree: kept
    assert docker_client().images.get(tag).id == built
    data = tmp_path / "data"
    data.mkdir()

    def arena(*command: str) -> str:
        return docker_client().containers.run(
            tag, list(command), environment={"ARENA_DATA_DIR": "/data", "ARENA_BATCH_SIZE": "5"},
            volumes={str(data): {"bind": "/data", "mode": "rw"}}, network_mode="none", remove=True,
        ).decode()

    assert "is up to date" in arena("db", "upgrade")  # the compose stack's migrate service
    assert "imported dataset 'inside': 12 images in batches of 5" in arena("dataset", "synth", "12", "--name", "inside")
    assert (data / "arena.db").is_file() and len(list((data / "store").rglob("*.png"))) == 12
