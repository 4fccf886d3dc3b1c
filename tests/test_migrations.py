"""The migrations, on SQLite and on a real PostgreSQL: the head revision builds exactly the
schema of the models (what ``alembic check`` says), and every revision downgrades and
upgrades again, so a release can be rolled back."""

import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from arena import db
from arena.config import Settings
from arena.models import Base
from servers import new_database, postgres_server


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "arena")
    return Settings(data_dir=tmp_path / "arena", database_url=new_database(request.getfixturevalue("postgres")))


def differences(settings: Settings) -> list:
    with db.get_engine(settings.resolved_database_url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def tables(settings: Settings) -> set[str]:
    return set(sa.inspect(db.get_engine(settings.resolved_database_url)).get_table_names())


def test_head_is_the_models_and_every_revision_rolls_back(settings):
    db.upgrade(settings)
    assert differences(settings) == []
    command.downgrade(db.alembic_config(settings), "base")
    assert tables(settings) <= {"alembic_version"}
    db.upgrade(settings)
    assert differences(settings) == []


def test_classifications_keep_one_foreign_key(settings):
    """Migration 0006: a key per row on the biggest table costs a trigger per insert on
    PostgreSQL; the one to the defense job carries every cascade."""
    db.upgrade(settings)
    keys = sa.inspect(db.get_engine(settings.resolved_database_url)).get_foreign_keys("classifications")
    assert [(key["constrained_columns"], key["referred_table"], key["options"].get("ondelete")) for key in keys] == [
        (["defense_job_id"], "defense_jobs", "CASCADE")]
    command.downgrade(db.alembic_config(settings), "0005")
    keys = sa.inspect(db.get_engine(settings.resolved_database_url)).get_foreign_keys("classifications")
    assert len(keys) == 4


def test_an_existing_tournament_becomes_one_round_per_dataset(settings):
    """Migration 0014, with data in it: each dataset becomes a round at the epsilons its
    attacks ran at, every submission is entered, and hidden leaderboards stay hidden."""
    settings.data_dir.mkdir(parents=True)
    command.upgrade(db.alembic_config(settings), "0010")
    engine = db.get_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        run = connection.execute
        run(sa.text("UPDATE tournament SET leaderboards_public = false"))
        run(sa.text("INSERT INTO datasets (id, name, created_at) VALUES (1, 'dev', '2026-01-01'), (2, 'final', '2026-01-02')"))
        run(sa.text("INSERT INTO batches (id, dataset_id, \"index\") VALUES (1, 1, 0), (2, 2, 0)"))
        run(sa.text("INSERT INTO teams (id, name, created_at) VALUES (1, 'a', '2026-01-01')"))
        run(sa.text("INSERT INTO submissions (id, team_id, name, kind, sha256, metadata, status, created_at) VALUES "
                    "(1, 1, 'fgsm', 'attack', 'x', '{}', 'accepted', '2026-01-03'), "
                    "(2, 1, 'guard', 'defense', 'y', '{}', 'accepted', '2026-01-04')"))
        run(sa.text("INSERT INTO attack_jobs (submission_id, batch_id, epsilon, status, attempt) VALUES "
                    "(1, 1, 16, 'done', 1), (1, 1, 4, 'done', 1)"))
    db.upgrade(settings)
    with engine.connect() as connection:
        rounds = connection.execute(sa.text("SELECT name, dataset_id, epsilons, visibility FROM rounds ORDER BY id")).all()
        entries = connection.execute(sa.text("SELECT round_id, submission_id FROM round_entries ORDER BY 1, 2")).all()
        baseline = connection.execute(sa.text("SELECT baseline FROM submissions WHERE id = 1")).scalar()
    parsed = [(name, dataset, json.loads(eps) if isinstance(eps, str) else eps, visibility)
              for name, dataset, eps, visibility in rounds]
    assert parsed == [("dev", 1, [4, 16], "hidden"), ("final", 2, [2, 4, 8, 16], "hidden")]
    assert [entry[1] for entry in entries] == [1, 2, 1, 2]
    assert baseline is False or baseline == 0
    command.downgrade(db.alembic_config(settings), "0010")
    assert "rounds" not in tables(settings)
