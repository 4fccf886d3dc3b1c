"""Base images follow their recipes: an image is rebuilt when its recipe (or the recipe it is
built FROM) changed, and kept when nothing did, so a new arena_zoo never runs from a stale
image and the step stays idempotent."""

import uuid
from pathlib import Path

import pytest

from arena.config import Settings
from arena.sandbox.containers import docker_client
from arena.tools import base_image


def _recipe(root: Path, name: str, base: str, text: str = "one") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(f"FROM {base}\nCOPY note.txt /note.txt\n")
    (folder / "note.txt").write_text(text)
    return folder


def test_the_hash_follows_the_recipe_and_the_recipe_below_it(tmp_path, monkeypatch):
    monkeypatch.setattr(base_image, "RECIPES", tmp_path)
    parent = _recipe(tmp_path, "parent", "arena/debian-rootfs:bookworm")
    _recipe(tmp_path, "child", base_image.recipe_tag("parent"))
    before = {name: base_image.recipe_hash(name) for name in ("parent", "child")}
    assert before == {name: base_image.recipe_hash(name) for name in ("parent", "child")}
    (parent / "__pycache__").mkdir()
    (parent / "__pycache__" / "x.pyc").write_bytes(b"compiled")  # not part of the recipe
    assert base_image.recipe_hash("parent") == before["parent"]
    (parent / "note.txt").write_text("two")
    after = {name: base_image.recipe_hash(name) for name in ("parent", "child")}
    assert after["parent"] != before["parent"] and after["child"] != before["child"]


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_an_image_is_rebuilt_when_its_recipe_changed_and_only_then(tmp_path, monkeypatch):
    monkeypatch.setattr(base_image, "RECIPES", tmp_path / "recipes")
    # a lock of its own for an image of its own: the host's is held for a minute while another
    # test builds arena/app, and this test waited that minute out (1 s alone, 55 s in the suite)
    monkeypatch.setattr(base_image, "BUILD_LOCK", tmp_path / "base-images.lock")
    name = f"recipe-test-{uuid.uuid4().hex[:8]}"
    folder = _recipe(tmp_path / "recipes", name, base_image.recipe_tag("python"))
    settings = Settings(data_dir=tmp_path / "data")
    tag = base_image.recipe_tag(name)
    built: list[str] = []
    try:
        assert base_image.build(settings, [name], say=lambda _m: None) == [tag]
        first = docker_client().images.get(tag)
        built.append(first.id)
        assert first.labels[base_image.RECIPE_LABEL] == base_image.recipe_hash(name)
        assert base_image.build(settings, [name], say=lambda _m: None) == []  # unchanged: kept
        (folder / "note.txt").write_text("two")
        assert base_image.build(settings, [name], say=lambda _m: None) == [tag]
        assert docker_client().images.get(tag).id != first.id
    finally:
        for image in [tag, *built]:
            docker_client().images.remove(image, force=True)
