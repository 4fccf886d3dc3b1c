"""The hostile suite's one shared tournament, built once per session."""

import pytest

from hostile.tournament import Tournament, build


@pytest.fixture(scope="session")
def tournament(engine, tmp_path_factory) -> Tournament:
    return build(tmp_path_factory.mktemp("hostile"))
