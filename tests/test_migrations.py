"""The migrations, on SQLite and on a real PostgreSQL: the head revision builds exactly the
schema of the models (what ``alembic check`` says), and every revision downgrades and
upgrades again, so a release can be rolled back."""

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
