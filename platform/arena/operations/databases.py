"""The database's part of a snapshot, on SQLite and on PostgreSQL.

A snapshot is consistent because everything else in it is read from the database's copy,
never from the live database: SQLite's online backup copies the file as of one moment
(writers go on, under WAL), and on PostgreSQL ``pg_dump`` dumps the state of a transaction
that stays open, through an exported snapshot, while the rest of the backup reads that
very state. Files written after that moment are referenced by nothing in the copy.
"""

import glob
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from alembic.migration import MigrationContext
from sqlalchemy import Connection, create_engine, func, inspect, select, table, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from arena.config import Settings
from arena.db import get_engine
from arena.errors import NotFoundError, PlatformError
from arena.operations.layout import copy_to


def dialect(settings: Settings) -> str:
    """``sqlite`` or ``postgresql``: what the installation's database is."""
    return make_url(settings.resolved_database_url).get_backend_name()


def _sqlite_file(settings: Settings) -> Path:
    return Path(make_url(settings.resolved_database_url).database)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the file, nor create it when it is missing."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


@contextmanager
def snapshot(settings: Settings, target: Path) -> Iterator[Connection]:
    """Copy the database as it is now into ``target``, and yield a connection that reads that
    same state, for everything else the snapshot takes."""
    if dialect(settings) == "sqlite":
        with _sqlite_snapshot(settings, target) as connection:
            yield connection
    else:
        with _postgres_snapshot(settings, target) as connection:
            yield connection


@contextmanager
def _sqlite_snapshot(settings: Settings, target: Path) -> Iterator[Connection]:
    """SQLite's online backup in one step (a step-wise one starts again at every write of a
    busy tournament); the copy leaves WAL mode, so that reading it never changes its bytes."""
    source_file = _sqlite_file(settings)
    if not source_file.is_file():
        raise NotFoundError(f"there is no database at {source_file}: nothing to back up")
    with closing(sqlite3.connect(source_file, timeout=30)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
    engine = create_engine("sqlite://", creator=lambda: _read_only(target))
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def _postgres_snapshot(settings: Settings, target: Path) -> Iterator[Connection]:
    """A read-only repeatable-read transaction whose snapshot ``pg_dump`` dumps, and which
    then reads the rest."""
    with get_engine(settings.resolved_database_url).connect() as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with connection.begin():
            exported = connection.scalar(text("SELECT pg_export_snapshot()"))
            _pg_tool("pg_dump", settings, "--format=custom", f"--snapshot={exported}", f"--file={target}")
            yield connection


def revision(connection: Connection) -> str | None:
    """The schema revision (Alembic's) of the database behind ``connection``."""
    return MigrationContext.configure(connection).get_current_revision()


def row_counts(connection: Connection) -> dict[str, int]:
    """Rows in every table, by name."""
    return {name: connection.scalar(select(func.count()).select_from(table(name)))
            for name in sorted(inspect(connection).get_table_names())}


def tables(settings: Settings) -> list[str]:
    """The tables the installation's database has (none: it is empty, or not there yet),
    found without creating anything."""
    if dialect(settings) == "sqlite":
        path = _sqlite_file(settings)
        if not path.exists():
            return []
        with closing(_read_only(path)) as connection:
            return sorted(name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"))
    try:
        return sorted(inspect(get_engine(settings.resolved_database_url)).get_table_names())
    except OperationalError as exc:
        raise PlatformError(f"cannot reach the database {_shown(settings)}: {exc.orig}") from None


def load(settings: Settings, source: Path) -> None:
    """Put the snapshot's database file ``source`` in place: a copy of the file on SQLite,
    ``pg_restore`` into the (empty) database on PostgreSQL."""
    if dialect(settings) == "sqlite":
        target = _sqlite_file(settings)
        for leftover in (target, target.with_name(target.name + "-wal"), target.with_name(target.name + "-shm")):
            leftover.unlink(missing_ok=True)  # an empty file (no tables: checked), or its journal
        copy_to(source, target)
        get_engine(settings.resolved_database_url).dispose()  # no pooled connection to the file replaced
    else:
        _pg_tool("pg_restore", settings, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                 str(source))


def _shown(settings: Settings) -> str:
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def _pg_program(program: str) -> str:
    """The newest installed PostgreSQL's ``program`` (Debian keeps each major version's tools in
    /usr/lib/postgresql/N/bin; a dump is read by the same or a newer ``pg_restore``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"),
                   key=lambda path: tuple(int(part) for part in Path(path).parts[4].split(".")))
    if found:
        return found[-1]
    if on_path := shutil.which(program):
        return on_path
    raise PlatformError(f"{program} is not installed: install PostgreSQL's client programs (apt-get install "
                        "postgresql-client) in the version of the server or newer")


def _pg_tool(program: str, settings: Settings, *arguments: str) -> None:
    """Run ``pg_dump`` or ``pg_restore`` on the installation's database; the password goes in
    the environment, never on a command line others can read."""
    url = make_url(settings.resolved_database_url)
    dbname = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    environment = {**os.environ, **({"PGPASSWORD": url.password} if url.password else {})}
    done = subprocess.run([_pg_program(program), f"--dbname={dbname}", *arguments], env=environment,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode:
        raise PlatformError(f"{program} failed on {_shown(settings)} (exit {done.returncode}): "
                            f"{done.stderr.strip()[-2000:]}")
