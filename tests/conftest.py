"""Shared fixtures: a fresh Arena per test (its own data dir, schema made by Alembic),
and for docker-marked tests a real engine with the base images built."""

import os
import shutil
from pathlib import Path

import pytest
from arena import REPO_ROOT, db
from arena.config import SandboxLimits, Settings
from arena.data.dataset import store_dataset, synthesize
from arena.db import transaction
from arena.intake.archive import pack
from arena.intake.submit import submit
from arena.models import CellTally, CleanTally
from arena.results import tallies
from arena.sandbox.containers import SandboxError, docker_client
from arena.tools import base_image
from sqlalchemy import select

SAMPLES = REPO_ROOT / "submissions" / "samples"
FIXTURES = Path(__file__).parent / "fixtures"


def make_settings(data_dir: Path, **overrides) -> Settings:
    values = dict(data_dir=data_dir, concurrency=2, batch_size=100, sandbox=SandboxLimits(memory="512m"))
    values.update(overrides)
    settings = Settings(**values)
    db.upgrade(settings)
    return settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "arena")


@pytest.fixture(scope="session")
def engine(tmp_path_factory) -> None:
    """A Docker engine with the sample base images; skipped only when docker is not required."""
    try:
        docker_client()
    except SandboxError as exc:
        if os.environ.get("ARENA_REQUIRE_DOCKER"):
            pytest.fail(f"ARENA_REQUIRE_DOCKER is set but {exc}")
        pytest.skip(f"needs a Docker engine: {exc}")
    base_image.build(Settings(data_dir=tmp_path_factory.mktemp("base-images")), say=lambda _m: None)


def submit_folder(settings: Settings, folder: Path, tmp_path: Path, name: str | None = None, team: str | None = None):
    archive = pack(folder, tmp_path / f"{folder.name}.tar.gz")
    return submit(settings, archive, team=team or f"team-{folder.name}", name=name)


def variant(folder: Path, tmp_path: Path, new_name: str) -> Path:
    """A copy of a sample with one changed comment: same behaviour, different code hash."""
    copy = tmp_path / new_name
    shutil.copytree(folder, copy)
    script = next(copy.glob("run_*.sh"))
    script.write_text(script.read_text() + f"# variant {new_name}\n")
    return copy


def synth_dataset(settings: Settings, images: int, batch_size: int, name: str = "synthetic"):
    return store_dataset(settings, name, synthesize(images), batch_size=batch_size)


def snapshot(settings: Settings) -> tuple[list, list]:
    """Every tally row (cells, then clean), in key order."""
    with transaction(settings) as session:
        return tuple(
            [tuple(row) for row in session.execute(select(*model.__table__.columns).order_by(*model.__table__.primary_key))]
            for model in (CellTally, CleanTally)
        )


def assert_tallies_match_a_rebuild(settings: Settings) -> None:
    """The tallies kept as results landed equal a full recount of the raw rows."""
    kept = snapshot(settings)
    with transaction(settings) as session:
        tallies.rebuild(session)
    assert snapshot(settings) == kept
