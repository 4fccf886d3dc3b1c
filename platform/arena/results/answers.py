"""Where a defense's answers go in, counted, and where they are deleted.

A 2017-size tournament stores 200 million answers, each also counted in the tallies. The
rows go first into a staging table private to the connection, with no index (COPY on
PostgreSQL); from there they are moved into ``classifications`` and counted, the counts
being those of exactly the rows stored, judged by ``tallies``' counts (``judging``'s
expressions): the answers are never read back from the big table. On PostgreSQL the move
and both counts are one statement over the rows its INSERT returns; SQLite, which has no
data-modifying WITH, runs the same steps one statement each. The primary key (defense job,
image) refuses a second answer, failing the whole transaction.

``classifications`` has no foreign key (a trigger per inserted row on PostgreSQL), so
deleting a defense job does not delete its answers: ``forget`` does, for the jobs
``planning.forget`` deletes.
"""

from collections.abc import Sequence

from sqlalchemy import Column, MetaData, Table, delete, insert, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

from arena.db import bulk_insert
from arena.models import CellTally, Classification, CleanTally
from arena.results import tallies

CLASSIFICATIONS = Classification.__table__
#: A temporary table with the columns of ``classifications`` and no index, made once per
#: connection and emptied before each use (and after it: truncated by PostgreSQL at every
#: commit, deleted on SQLite), so that it never grows.
STAGED = Table("staged_answers", MetaData(),
               *(Column(column.name, column.type, nullable=column.nullable) for column in CLASSIFICATIONS.c),
               prefixes=["TEMPORARY"], postgresql_on_commit="DELETE ROWS")
COLUMNS = [column.name for column in STAGED.c]
#: Ids per DELETE statement: under SQLite's limit of bound parameters.
CHUNK = 10_000


def store(session: Session, rows: list[dict]) -> None:
    """Store these answers of defense jobs this transaction holds, and add them to the tallies."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    session.execute(CreateTable(STAGED, if_not_exists=True))
    session.execute(delete(STAGED))  # what an earlier call of this transaction staged (an empty table otherwise)
    bulk_insert(session, STAGED, rows)
    if dialect == "postgresql":
        session.execute(MOVE_AND_COUNT)
        return
    session.execute(tallies.adding(dialect, CellTally, tallies.cell_counts(STAGED)))
    session.execute(tallies.adding(dialect, CleanTally, tallies.clean_counts(STAGED)))
    session.execute(insert(CLASSIFICATIONS).from_select(COLUMNS, select(STAGED)))
    session.execute(delete(STAGED))  # SQLite keeps a temporary table's rows past the commit


def _move_and_count():
    """One statement: the staged rows into ``classifications``, and the rows inserted added
    to the cell and clean tallies."""
    stored = insert(CLASSIFICATIONS).from_select(COLUMNS, select(STAGED)).returning(*CLASSIFICATIONS.c).cte("stored")
    cells = tallies.adding("postgresql", CellTally, tallies.cell_counts(stored)).returning(literal_column("1")).cte("cells")
    return tallies.adding("postgresql", CleanTally, tallies.clean_counts(stored)).add_cte(cells)


MOVE_AND_COUNT = _move_and_count()


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
