"""Database engine, sessions and schema migrations.

The schema is only ever created by Alembic (``arena db upgrade``), in tests too, so the
migration that production runs is the one the tests exercise.
"""

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import ParamSpec, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

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


def _unreachable(error: BaseException) -> bool:
    """Connection refused or lost: worth waiting for (a restart, a failover), unlike a bad query
    (SQLite reports those as OperationalError too, so only the server's connection errors count)."""
    return isinstance(error, DBAPIError) and (error.connection_invalidated or isinstance(error.orig, psycopg.OperationalError))


P = ParamSpec("P")
R = TypeVar("R")
log = logging.getLogger(__name__)


def retry_while_unreachable(step: Callable[P, R]) -> Callable[P, R]:
    """Retry a whole transaction while the database is unreachable, for steps whose first
    argument is the Settings. A database restarted in the middle of a container run would
    otherwise lose that run's results; each retry is logged, and after
    ``settings.database_retry_seconds`` the error is raised. The step must be one
    transaction, so that a retry starts from a clean slate."""

    @functools.wraps(step)
    def retried(*args: P.args, **kwargs: P.kwargs) -> R:
        settings: Settings = args[0]
        retrying = Retrying(
            retry=retry_if_exception(_unreachable),
            stop=stop_after_delay(settings.database_retry_seconds),
            wait=wait_exponential(multiplier=0.5, max=10),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
        return retrying(step, *args, **kwargs)

    return retried


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(settings), revision)
