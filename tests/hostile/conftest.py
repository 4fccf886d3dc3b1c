"""The hostile suite's shared tournaments, one per OCI runtime, each built once per session.

The containment tests run under runc and under gVisor's runsc (``RUNTIMES``, through
``pytest.mark.parametrize("runtime", RUNTIMES)``, which overrides the ``runtime``
fixture); the other tests get a runc tournament. The tournaments are kept in a
session-wide dict rather than a parametrized session fixture, because pytest-randomly
interleaves the two runtimes' tests and pytest would rebuild the fixture at every switch.
"""

import pytest

from conftest import require_runtime
from hostile.tournament import Tournament, build


@pytest.fixture
def runtime() -> str | None:
    """The OCI runtime the test's containers run under (None: the engine's default, runc);
    modules parametrize it."""
    return None


@pytest.fixture
def engine_runtime(engine, runtime) -> str | None:
    """``runtime``, once the engine is known to have it (skipped, or failed under
    ARENA_REQUIRE_RUNSC, where it does not)."""
    if runtime:
        require_runtime(runtime)
    return runtime


@pytest.fixture(scope="session")
def tournaments(engine) -> dict[str | None, Tournament]:
    return {}


@pytest.fixture
def tournament(tournaments, engine_runtime, tmp_path_factory) -> Tournament:
    if engine_runtime not in tournaments:
        tournaments[engine_runtime] = build(tmp_path_factory.mktemp(f"hostile-{engine_runtime or 'runc'}"), engine_runtime)
    return tournaments[engine_runtime]
