"""Database engine, sessions and schema migrations.

The schema is only ever created by Alembic (``arena db upgrade``), in tests too, so the
migration that production runs is the one the tests exercise.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from arena import REPO_ROOT
from arena.config import Settings


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers (leaderboards) go on while a run writes; foreign keys enforce cascades."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@lru_cache
def get_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def session_factory(settings: Settings) -> sessionmaker[Session]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return sessionmaker(get_engine(settings.resolved_database_url), expire_on_commit=False)


@contextmanager
def transaction(settings: Settings) -> Iterator[Session]:
    """A session committed on success and rolled back on any error, so nothing is half-stored."""
    with session_factory(settings).begin() as session:
        yield session


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
