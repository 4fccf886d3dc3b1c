"""Database engine, sessions and schema migrations.

The schema is only ever created or changed by Alembic, in one explicit place: ``arena db
upgrade`` (which the README's set-up, the compose stack's ``migrate`` service and the
demo run), and the tests make theirs the same way, so the migration that production runs
is the one the tests exercise. Everything else only checks that the schema is current
(``require_schema``) and says what to run when it is not, rather than migrating as a side
effect of a read.
"""

import functools
import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from operator import itemgetter
from typing import ParamSpec, TypeVar

import psycopg
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import Copy, sql
from psycopg.copy import FileWriter
from sqlalchemy import Engine, Table, create_engine, event, insert
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
from arena.errors import ConflictError


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


def bulk_insert(session: Session, table: Table, rows: list[dict], *copies: Table) -> None:
    """Insert many plain rows (all with the same keys, at least two, in the same order) in the
    session's transaction, into ``table`` and into each of ``copies`` (tables with those
    columns too).

    On PostgreSQL the rows go in with COPY, inside the caller's transaction: COPY checks the
    unique indexes and foreign keys like INSERT does, so a duplicate fails the whole
    transaction (fencing check and status change included) exactly as the INSERT did. The
    rows are formatted once, and the same bytes copied into every table. Enum columns hold
    ``StrEnum`` members (``models._enum``), which psycopg sends as the str they are, their
    value. Elsewhere (SQLite) one executemany ``insert()`` per table.
    """
    if not rows:
        return
    session.flush()  # pending ORM changes first, as session.execute would do
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        for target in (table, *copies):
            connection.execute(insert(target), rows)
        return
    columns = list(rows[0])
    values, formatted = itemgetter(*columns), io.BytesIO()
    try:
        with connection.connection.driver_connection.cursor() as cursor:
            with Copy(cursor, writer=FileWriter(formatted)) as copy:
                for row in rows:
                    copy.write_row(values(row))
            for target in (table, *copies):
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(target.name), sql.SQL(", ").join(map(sql.Identifier, columns))
                )
                with cursor.copy(statement) as copy:
                    copy.write(formatted.getbuffer())
    except psycopg.Error as error:  # raised as SQLAlchemy raises any statement's: IntegrityError, OperationalError...
        raise DBAPIError.instance(f"COPY {table.name}", None, error, psycopg.Error) from error


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


class SchemaOutOfDate(ConflictError):
    """The database is not at the schema this code expects."""


def require_schema(settings: Settings) -> None:
    """Raise ``SchemaOutOfDate``, naming the command to run, unless the database is at the
    newest migration; a new data directory or an older release's database both end here."""
    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # where SQLite's file is looked for
    with get_engine(settings.resolved_database_url).connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        found = f"at revision {current}" if current else "without Arena's schema"
        raise SchemaOutOfDate(
            f"the database {settings.resolved_database_url} is {found}; this Arena needs revision {head}: "
            "run `arena db upgrade`"
        )
