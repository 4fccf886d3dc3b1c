"""Tallies: the scoring's counts per matrix cell, maintained as results land.

At the 2017 scale a tournament holds 200M classifications; scores and matrices are sums
over them, so they are read from per-(dataset, attack, defense, epsilon) counts (at most
attacks x defenses x epsilons rows) and per-(dataset, defense) clean counts instead.

How the counts stay exact, whatever the executor does:

- ``results.answers.store`` adds the counts of exactly the answers it stores (``adding``
  ``cell_counts`` and ``clean_counts`` of a staged copy of them, judged by ``judging``'s
  expressions, as the rebuild counts the table), in the transaction that stores them,
  after the fencing check. A stale attempt stores no rows and counts nothing; a
  rolled-back transaction takes its counts with it; the primary key lets an answer, hence
  its count, land only once.
- ``forget`` drops the tallies of what ``planning.forget`` deletes, in its transaction.
- Disqualification changes nothing here: readers keep accepted submissions only.
- ``rebuild`` recomputes every tally from the raw rows (``arena scores rebuild``).
"""

from sqlalchemy import FromClause, Insert, Select, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arena.db import bulk_insert
from arena.models import (
    AttackJob,
    Batch,
    CellTally,
    Classification,
    CleanTally,
    DefenseJob,
    Image,
    Submission,
)
from arena.results.judging import error, hit

CLASSIFICATIONS = Classification.__table__


def cell_counts(answers: FromClause = CLASSIFICATIONS) -> Select:
    """Counts per (dataset, attack, defense, epsilon) of the answers in ``answers`` (the table,
    or rows being stored: the same columns) given by defense jobs over an attack job, in key
    order (concurrent upserts then lock rows in the same order).

    Counted per defense job first, each answer joined to its image only (for the truth);
    then each job's counts go to its cell through the job, one row per job: at the 2017 size
    the recount is one scan grouped by a single key, which PostgreSQL splits among its
    parallel workers, and the cell is never looked up per answer."""
    per_job = (
        select(answers.c.defense_job_id, func.count().label("scored"),
               func.sum(error(answers.c.label)).label("errors"), func.sum(hit(answers.c.label)).label("hits"))
        .select_from(answers)
        .join(Image, answers.c.image_id == Image.id)
        .group_by(answers.c.defense_job_id)
        .subquery("per_job")
    )
    key = (Batch.dataset_id, AttackJob.submission_id, DefenseJob.submission_id, AttackJob.epsilon)
    return (
        select(*key, func.sum(per_job.c.scored), func.sum(per_job.c.errors), func.sum(per_job.c.hits))
        .select_from(per_job)
        .join(DefenseJob, per_job.c.defense_job_id == DefenseJob.id)
        .join(AttackJob, DefenseJob.attack_job_id == AttackJob.id)
        .join(Batch, DefenseJob.batch_id == Batch.id)
        .group_by(*key)
        .order_by(*key)
    )


def clean_counts(answers: FromClause = CLASSIFICATIONS) -> Select:
    """Counts per (dataset, defense) of the answers in ``answers`` given by defense jobs over a
    clean batch: reached through those jobs (a few thousand at the 2017 size, each a range of
    the table's key), not by scanning every answer."""
    key = (Batch.dataset_id, DefenseJob.submission_id)
    return (
        select(*key, func.count(), func.sum(error(answers.c.label)))
        .select_from(DefenseJob)
        .join(Batch, DefenseJob.batch_id == Batch.id)
        .join(answers, answers.c.defense_job_id == DefenseJob.id)
        .join(Image, answers.c.image_id == Image.id)
        .where(DefenseJob.attack_job_id.is_(None))
        .group_by(*key)
        .order_by(*key)
    )


def _columns(model: type) -> list[str]:
    return [column.name for column in model.__table__.columns]


def adding(dialect: str, model: type[CellTally] | type[CleanTally], counts: Select) -> Insert:
    """The statement adding ``counts`` to the tallies: new cells inserted, existing ones incremented."""
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(model).from_select(_columns(model), counts)
    keys = [column.name for column in model.__table__.primary_key]
    added = {name: getattr(model, name) + statement.excluded[name] for name in _columns(model) if name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=added)


def forget(session: Session, submission: Submission | None = None) -> None:
    """Drop the tallies of one submission (every dataset), or all of them."""
    if submission is None:
        session.execute(delete(CellTally))
        session.execute(delete(CleanTally))
    elif submission.kind.is_attack:
        session.execute(delete(CellTally).where(CellTally.attack_id == submission.id))
    else:
        session.execute(delete(CellTally).where(CellTally.defense_id == submission.id))
        session.execute(delete(CleanTally).where(CleanTally.defense_id == submission.id))


def rebuild(session: Session) -> int:
    """Recompute every tally from the raw classifications; return the number of cells.

    On PostgreSQL the tally tables are locked first (EXCLUSIVE: readers go on, writers wait),
    so a job landing meanwhile is either in the recount or added after it, never both. The
    counts are selected, then inserted: a plain SELECT may use parallel workers, an
    INSERT ... SELECT may not. On SQLite the recount holds the database's write lock
    throughout: about a minute at the 2017 size (docs/benchmarks.md), longer than a
    storing worker waits for it."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {CellTally.__tablename__}, {CleanTally.__tablename__} IN EXCLUSIVE MODE"))
    forget(session)
    _replace(session, CleanTally, clean_counts())
    return _replace(session, CellTally, cell_counts())


def _replace(session: Session, model: type[CellTally] | type[CleanTally], counts: Select) -> int:
    rows = [dict(zip(_columns(model), row)) for row in session.execute(counts)]
    bulk_insert(session, model.__table__, rows)
    return len(rows)
