"""Tallies: the scoring's counts per matrix cell, maintained as results land.

At the 2017 scale a tournament holds 200M classifications; scores and matrices are sums
over them, so they are read from per-(dataset, attack, defense, epsilon) counts (at most
attacks x defenses x epsilons rows) and per-(dataset, defense) clean counts instead.

How the counts stay exact, whatever the executor does:

- ``count_defense_jobs`` runs in the transaction that stores those jobs' classifications,
  after the fencing check, and adds the counts *of the rows just stored* (read back with
  the same judging query the rebuild uses, ``judging``'s) with INSERT ... ON CONFLICT DO UPDATE. A stale
  attempt stores no rows and counts nothing; a rolled-back transaction takes its counts
  with it; the unique indexes let a job's rows, hence its counts, land only once.
- ``forget`` drops the tallies of what ``scheduler.forget`` deletes, in its transaction.
- Disqualification changes nothing here: readers keep accepted submissions only.
- ``rebuild`` recomputes every tally from the raw rows (``arena scores rebuild``).
"""

from sqlalchemy import Select, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arena.models import (
    AdversarialImage,
    AttackJob,
    CellTally,
    Classification,
    CleanTally,
    Image,
    Submission,
)
from arena.results.judging import ERROR, HIT


def cell_counts(*where) -> Select:
    """Counts per (dataset, attack, defense, epsilon) of the adversarial classifications
    matching ``where``, in key order (concurrent upserts then lock rows in the same order)."""
    key = (Image.dataset_id, AttackJob.submission_id, Classification.defense_id, AttackJob.epsilon)
    return (
        select(*key, func.count(), func.sum(ERROR), func.sum(HIT))
        .select_from(Classification)
        .join(AdversarialImage, Classification.adversarial_image_id == AdversarialImage.id)
        .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
        .join(Image, Classification.image_id == Image.id)
        .where(*where)
        .group_by(*key)
        .order_by(*key)
    )


def clean_counts(*where) -> Select:
    """Counts per (dataset, defense) of the clean-image classifications matching ``where``."""
    key = (Image.dataset_id, Classification.defense_id)
    return (
        select(*key, func.count(), func.sum(ERROR))
        .select_from(Classification)
        .join(Image, Classification.image_id == Image.id)
        .where(Classification.adversarial_image_id.is_(None), *where)
        .group_by(*key)
        .order_by(*key)
    )


def _columns(model: type) -> list[str]:
    return [column.name for column in model.__table__.columns]


def _add(session: Session, model: type[CellTally] | type[CleanTally], counts: Select) -> None:
    """Add ``counts`` to the tallies: new cells are inserted, existing ones incremented."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).from_select(_columns(model), counts)
    keys = [column.name for column in model.__table__.primary_key]
    added = {name: getattr(model, name) + statement.excluded[name] for name in _columns(model) if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=added))


def count_defense_jobs(session: Session, job_ids: list[int]) -> None:
    """Add the counts of these defense jobs' stored classifications; call it in the
    transaction that stored them, once per job."""
    if job_ids:
        of_jobs = Classification.defense_job_id.in_(job_ids)
        _add(session, CellTally, cell_counts(of_jobs))
        _add(session, CleanTally, clean_counts(of_jobs))


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
