"""Two uploads of one team at once on a real PostgreSQL, with one upload left in the quota:
the team's row is locked while the quota is checked and the entry stored, so exactly one
is taken and the other is refused (429)."""

import threading
import time

import pytest

from arena import db
from arena.competition import quotas, rounds
from arena.db import transaction
from arena.errors import QuotaError
from arena.intake import submit
from arena.intake.metadata import Metadata
from arena.models import Round
from conftest import make_settings
from factories import synth_dataset
from servers import new_database, postgres_server


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


def test_two_uploads_at_once_take_the_last_quota_once(postgres, tmp_path, monkeypatch):
    settings = make_settings(tmp_path / "arena", database_url=new_database(postgres))
    db.upgrade(settings)
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        round_ = rounds.update(rounds.find(session, "synthetic"), total_quota=1)
        round_id = round_.id
    metadata = Metadata(type="defense", container="arena/python:bookworm", entry_point="run.sh")
    submit._insert(settings, "0" * 64, "first", "red", metadata, round_id, None)  # the team exists, one upload used
    with transaction(settings) as session:
        rounds.update(session.get(Round, round_id), total_quota=2)  # one left
    outcomes: list[object] = []
    start = threading.Barrier(2)
    check = quotas.check

    def slow_check(*args, **kwargs) -> None:  # a wide window between the check and the insert
        check(*args, **kwargs)
        time.sleep(0.5)

    monkeypatch.setattr(quotas, "check", slow_check)

    def upload(name: str) -> None:
        start.wait()
        try:
            outcomes.append(submit._insert(settings, name.ljust(64, "1"), name, "red", metadata, round_id, None))
        except QuotaError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=upload, args=(name,)) for name in ("second", "third")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(isinstance(o, int) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, QuotaError) for o in outcomes) == 1, outcomes
