"""Tallies: the scoring's counts per matrix cell, maintained as results land.

At the 2017 scale a tournament holds 200M classifications; scores and matrices are sums
over them, so they are read from per-(dataset, attack, defense, epsilon) counts (at most
attacks x defenses x epsilons rows) and per-(dataset, defense) clean counts instead.

How the counts stay exact, whatever the executor does:

- ``results.answers.store`` adds the counts of exactly the answers it stores (``adding``
  ``cell_counts`` and ``clean_counts`` of the staged rows, judged by ``judging``'s
  expressions, as the rebuild counts the table), in the transaction that stores them,
  after the fencing check: on PostgreSQL in the very statement that inserts them. A stale
  attempt stores no rows and counts nothing; a rolled-back transaction takes its counts
  with it; the primary key lets an answer, hence its count, land only once.
- ``forget`` drops the tallies of what ``planning.forget`` deletes, in its transaction.
- Disqualification changes nothing here: readers keep accepted submissions only.
- ``rebuild`` recomputes every tally from the raw rows (``arena scores rebuild``).
"""

from sqlalchemy import ColumnElement, FromClause, Insert, Select, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arena.models import (
    AttackJob,
    CellTally,
    Classification,
    CleanTally,
    DefenseJob,
    Image,
    Submission,
)
from arena.results.judging import error, hit

CLASSIFICATIONS = Classification.__table__


def cell_counts(answers: FromClause = CLASSIFICATIONS, *where: ColumnElement) -> Select:
    """Counts per (dataset, attack, defense, epsilon) of the adversarial classifications in
    ``answers`` (the table, or rows being stored: the same columns) matching ``where``, in key
    order (concurrent upserts then lock rows in the same order).

    Counted per defense job first, each answer joined to its image only; then each job's
    counts go to its attack job's cell, one row per job: the cell is never looked up per
    answer, and the grouping of the answers needs no sort (the jobs' rows are few)."""
    per_job = (
        select(answers.c.defense_job_id, answers.c.defense_id, Image.dataset_id, func.count().label("scored"),
               func.sum(error(answers.c.label)).label("errors"), func.sum(hit(answers.c.label)).label("hits"))
        .select_from(answers)
        .join(Image, answers.c.image_id == Image.id)
        .where(answers.c.adversarial_image_id.is_not(None), *where)
        .group_by(answers.c.defense_job_id, answers.c.defense_id, Image.dataset_id)
        .subquery("per_job")
    )
    key = (per_job.c.dataset_id, AttackJob.submission_id, per_job.c.defense_id, AttackJob.epsilon)
    return (
        select(*key, func.sum(per_job.c.scored), func.sum(per_job.c.errors), func.sum(per_job.c.hits))
        .select_from(per_job)
        .join(DefenseJob, per_job.c.defense_job_id == DefenseJob.id)
        .join(AttackJob, DefenseJob.attack_job_id == AttackJob.id)
        .group_by(*key)
        .order_by(*key)
    )


def clean_counts(answers: FromClause = CLASSIFICATIONS, *where: ColumnElement) -> Select:
    """Counts per (dataset, defense) of the clean-image classifications in ``answers`` matching ``where``."""
    key = (Image.dataset_id, answers.c.defense_id)
    return (
        select(*key, func.count(), func.sum(error(answers.c.label)))
        .select_from(answers)
        .join(Image, answers.c.image_id == Image.id)
        .where(answers.c.adversarial_image_id.is_(None), *where)
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
    INSERT ... SELECT may not."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"LOCK TABLE {CellTally.__tablename__}, {CleanTally.__tablename__} IN EXCLUSIVE MODE"))
    forget(session)
    _replace(session, CleanTally, clean_counts())
    return _replace(session, CellTally, cell_counts())


def _replace(session: Session, model: type[CellTally] | type[CleanTally], counts: Select) -> int:
    rows = [dict(zip(_columns(model), row)) for row in session.execute(counts)]
    if rows:
        session.execute(insert(model), rows)
    return len(rows)
