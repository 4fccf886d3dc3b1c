"""Where a defense's answers go in, counted, and where they are deleted.

A 2017-size tournament stores 200 million answers, each also counted in the tallies. The
rows of a transaction go, besides ``classifications``, into a staging table private to the
connection, with no index, and are counted from there by ``tallies``' counts (judged by
``judging``'s expressions, as the recount judges the table): the counts are those of
exactly the rows stored, and the answers are never read back from the big table. On
PostgreSQL the rows are formatted once and the same bytes copied (COPY) into both tables,
then one statement adds them to both tallies: COPY writes a page of rows at a time where
an INSERT ... SELECT from the staging table would write, and log, row by row (twice the
time, ``bench/ingest.py``). SQLite inserts them into the staging table, counts them, and
moves them into the table with one INSERT ... SELECT. The primary key (defense job, image)
refuses a second answer, failing the whole transaction, counts included.

``classifications`` has no foreign key (a trigger per inserted row on PostgreSQL), so
deleting a defense job does not delete its answers: ``forget`` does, for the jobs
``planning.forget`` deletes.
"""

from collections.abc import Sequence

from sqlalchemy import Column, MetaData, Table, delete, insert, literal_column, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from arena.db import bulk_insert
from arena.models import CellTally, Classification, CleanTally
from arena.results import tallies

CLASSIFICATIONS = Classification.__table__
#: A temporary table with the columns of ``classifications`` and no index, made once per
#: connection and emptied at the end of each use (truncated by PostgreSQL at every commit,
#: deleted on SQLite), so that it never grows.
STAGED = Table("staged_answers", MetaData(),
               *(Column(column.name, column.type, nullable=column.nullable) for column in CLASSIFICATIONS.c),
               prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS")
COLUMNS = [column.name for column in STAGED.c]
#: Its DDL, compiled once per dialect (SQLAlchemy does not cache the compilation of DDL).
STAGING = {module.dialect.name: text(str(CreateTable(STAGED, if_not_exists=True).compile(dialect=module.dialect())))
           for module in (postgresql, sqlite)}
#: Ids per DELETE statement: under SQLite's limit of bound parameters.
CHUNK = 10_000


def store(session: Session, rows: list[dict]) -> None:
    """Store these answers of defense jobs this transaction holds, and add them to the tallies."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    session.execute(STAGING[dialect])
    if dialect == "postgresql":
        session.execute(delete(STAGED))  # what an earlier call of this transaction staged (an empty table otherwise)
        bulk_insert(session, CLASSIFICATIONS, rows, STAGED)
        session.execute(COUNT_STAGED)
        return
    bulk_insert(session, STAGED, rows)
    for model, counts in ((CellTally, tallies.cell_counts(STAGED)), (CleanTally, tallies.clean_counts(STAGED))):
        session.execute(tallies.adding(dialect, model, counts))
    session.execute(insert(CLASSIFICATIONS).from_select(COLUMNS, select(STAGED)))
    session.execute(delete(STAGED))  # SQLite keeps a temporary table's rows past the commit


def _count_staged():
    """One statement adding the staged rows to the cell and the clean tallies."""
    cells = tallies.adding("postgresql", CellTally, tallies.cell_counts(STAGED)).returning(literal_column("1")).cte("cells")
    return tallies.adding("postgresql", CleanTally, tallies.clean_counts(STAGED)).add_cte(cells)


COUNT_STAGED = _count_staged()


def forget(session: Session, defense_job_ids: Sequence[int] | None) -> None:
    """Delete the answers of these defense jobs, or every answer (None). Call it after
    deleting the jobs in the same transaction: a job being stored holds its row lock, so
    its answers are committed by the time its row is deleted, and this next statement sees
    them."""
    if defense_job_ids is None:
        session.execute(delete(CLASSIFICATIONS))
        return
    for start in range(0, len(defense_job_ids), CHUNK):
        chunk = defense_job_ids[start:start + CHUNK]
        session.execute(delete(CLASSIFICATIONS).where(CLASSIFICATIONS.c.defense_job_id.in_(chunk)))
