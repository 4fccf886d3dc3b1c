"""Shared fixtures: a fresh Arena per test (its own data dir, schema made by Alembic),
and for docker-marked tests a real engine with the base images built."""

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from docker.models.containers import Container
from sqlalchemy import select

from arena import REPO_ROOT, db
from arena.config import SandboxLimits, Settings
from arena.db import transaction
from arena.models import CellTally, CleanTally
from arena.results import tallies
from arena.sandbox import pipes
from arena.sandbox.containers import LABEL, SandboxError, docker_client
from arena.tools import base_image

# tests/test_web_*.py still import these builders from here; the rest import ``factories``.

SAMPLES = REPO_ROOT / "submissions" / "samples"
FIXTURES = Path(__file__).parent / "fixtures"


def make_settings(data_dir: Path, **overrides) -> Settings:
    values = dict(data_dir=data_dir, concurrency=2, batch_size=100, sandbox=SandboxLimits(memory="512m"),
                  allowed_hosts=["testserver", "127.0.0.1"])  # TestClient's name, and live servers'
    values.update(overrides)
    settings = Settings(**values)
    db.upgrade(settings)
    return settings


#: The groups that take longest (measured with --durations), handed out first so that none
#: is left to run alone at the end; the others follow in the random order. A group missing
#: here is merely scheduled later.
LONGEST_FIRST = ["hostile", "test_compose", "test_distributed", "test_web_tournament", "test_tournament",
                 "test_real_models", "test_backup", "test_workers", "test_packing", "test_execution", "test_replay",
                 "test_app_image", "test_query_track", "test_object_store", "test_web_whole_competition"]


def group(nodeid: str) -> str:
    """The tests that run together on one worker: a test file, whose module fixtures are then
    built once; the hostile suite's files are one group, as they share one tournament per
    runtime, and so that its fork bombs and CPU spinners never overlap its other cases (whose
    honest runs have time limits)."""
    path = nodeid.partition("::")[0]
    folder, _, file = path.rpartition("/")
    return "hostile" if folder.endswith("hostile") else file.removesuffix(".py")


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs on parallel workers (pytest-xdist, ``--dist loadfile``): whole groups
    to a worker (``group``), rather than whole files."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group(nodeid)

    return ByGroup(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_finish(session: pytest.Session):
    """Once pytest-randomly has shuffled them: the longest groups first, each group's tests in
    their random order (what the scheduler hands out first is what comes first here)."""
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    session.items.sort(key=lambda item: rank.get(group(item.nodeid), len(rank)))
    yield


@pytest.fixture(autouse=True)
def _a_terminal_of_100_columns(monkeypatch) -> None:
    """The CLI's tables are asserted at the 100 columns the README promises, whatever terminal
    the suite runs in (pytest-xdist's workers see COLUMNS=80)."""
    from arena import cli

    monkeypatch.setattr(cli.console, "size", (100, 24))


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


@pytest.fixture
def shell_less_image(engine, tmp_path):
    """An image of this test's own: arena/python:bookworm without /bin/sh, removed at the end."""
    tag = f"arena-test/no-shell-{uuid.uuid4().hex[:12]}:latest"
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "Dockerfile").write_text('FROM arena/python:bookworm\nRUN ["/bin/rm", "/bin/sh"]\n')
    image, _log = docker_client().images.build(path=str(tmp_path / "image"), tag=tag, rm=True, network_mode="none")
    yield tag
    docker_client().images.remove(image.id, force=True)


#: How to give an engine gVisor's runtime (the engine scripts/with-docker.sh starts has it).
REGISTER_RUNSC = (
    "install gVisor (apt-get install runsc) and start dockerd with --config-file scripts/dockerd.json, as "
    "scripts/with-docker.sh does when no engine answers, or copy its runtimes entry into /etc/docker/daemon.json "
    "and restart dockerd (docs/security.md)"
)


def require_runtime(runtime: str) -> None:
    """Skip, saying how to register it, when the engine lacks ``runtime``; fail instead under
    ARENA_REQUIRE_RUNSC, which scripts/with-docker.sh sets when the engine is the one it
    started with the project's daemon config, so that `make test` there never skips gVisor."""
    runtimes = docker_client().info().get("Runtimes", {})
    if runtime in runtimes:
        return
    message = f"the Docker engine has no {runtime} runtime (it has {', '.join(sorted(runtimes))}): {REGISTER_RUNSC}"
    if os.environ.get("ARENA_REQUIRE_RUNSC"):
        pytest.fail(f"ARENA_REQUIRE_RUNSC is set but {message}")
    pytest.skip(message)


def require_host_pipes(runtime: str | None) -> None:
    """Skip (fail under ARENA_REQUIRE_RUNSC) unless the query track's channel goes over host
    pipes under ``runtime`` on this engine: runsc must be registered with --host-fifo=open."""
    if runtime:
        require_runtime(runtime)
    if pipes.carries(docker_client().info(), SandboxLimits(runtime=runtime)):
        return
    message = f"the Docker engine's {runtime or 'default'} runtime opens no host pipes: {REGISTER_RUNSC}"
    if os.environ.get("ARENA_REQUIRE_RUNSC"):
        pytest.fail(f"ARENA_REQUIRE_RUNSC is set but {message}")
    pytest.skip(message)


T = TypeVar("T")


def wait_until(condition: Callable[[], T], seconds: float, what: str, every: float = 0.1) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail naming
    ``what`` was awaited when ``seconds`` pass first, so that no wait of a test hangs."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds:g} s for {what}")
        time.sleep(every)
    return result


def containers_mounting(folder: Path) -> list[Container]:
    """The sandbox containers (Arena's label) that bind-mount something under ``folder``: a
    test's own, found by its own folder, so that tests never look at or remove the
    containers of other tests or people on a shared engine."""
    inside = folder.resolve()
    # sparse: the list call alone (its Mounts and State suffice), no inspect per container,
    # which raises NotFound when another test removes one in between.
    return [container for container in docker_client().containers.list(all=True, sparse=True, filters={"label": LABEL})
            if any(Path(m.get("Source", "/")).is_relative_to(inside) for m in container.attrs.get("Mounts", []))]


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
