"""Planning: which jobs are missing, and only those.

The tournament's work is a grid, per round (a round owns its dataset): every accepted
attack entered in the round x the round's epsilons x every batch, then every accepted
defense entered in the round x every finished attack job and every clean batch. Planning
compares the grid with the jobs already in the database and inserts the difference, so
a new attack adds only its row and a new defense only its column. Two runners may plan at
once (two ``arena run``, a worker fleet's dispatcher and the web's Run button): a job the
other one inserted first is skipped by the unique constraints, not an error.
"""

from dataclasses import dataclass
from itertools import product

from sqlalchemy import Select, Table, delete, exists, func, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from arena import job_states
from arena.config import EpsilonSchedule
from arena.models import (
    AttackJob,
    Batch,
    Dataset,
    DefenseJob,
    Entry,
    JobKind,
    JobStatus,
    QueryJob,
    QueryResult,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from arena.results import answers, tallies


@dataclass(frozen=True)
class Plan:
    attack_jobs: int
    defense_jobs: int


def _accepted(session: Session, dataset: Dataset, defenses: bool) -> list[int]:
    """Accepted submissions entered in the round that owns the dataset (none without a round)."""
    kinds = [SubmissionKind.DEFENSE] if defenses else [SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK]
    query = (
        select(Submission.id)
        .join(Entry, Entry.submission_id == Submission.id)
        .join(Round, Entry.round_id == Round.id)
        .where(Round.dataset_id == dataset.id, Submission.kind.in_(kinds), Submission.status == SubmissionStatus.ACCEPTED)
    )
    return list(session.scalars(query.order_by(Submission.id)))


def _batch_ids(session: Session, dataset: Dataset) -> list[int]:
    return list(session.scalars(select(Batch.id).where(Batch.dataset_id == dataset.id).order_by(Batch.index)))


def plan_attack_jobs(session: Session, dataset: Dataset, epsilons: list[int], schedule: EpsilonSchedule) -> int:
    """Attack jobs for the entered attacks at ``epsilons`` under ``schedule``: the round's
    (``rounds.run_settings``), never a default, so that every planner plans the same jobs."""
    batches = _batch_ids(session, dataset)
    existing = set(
        map(tuple, session.execute(
            select(AttackJob.submission_id, AttackJob.epsilon, AttackJob.batch_id).where(AttackJob.batch_id.in_(batches))
        ))
    )
    at = [(eps, batch) for index, batch in enumerate(batches) for eps in schedule.of_batch(epsilons, index)]
    wanted = ((submission, eps, batch) for submission, (eps, batch) in product(_accepted(session, dataset, defenses=False), at))
    missing = [dict(submission_id=s, epsilon=e, batch_id=b) for s, e, b in wanted if (s, e, b) not in existing]
    return _insert_new(session, AttackJob.__table__, missing)


def plan_defense_jobs(session: Session, dataset: Dataset) -> int:
    """Defense jobs for clean batches and for every finished attack job of an entered attack.

    The difference is taken and inserted by the database (INSERT ... SELECT ... WHERE NOT
    EXISTS, each probe one look-up in a unique index): at the 2017 final's size the grid is
    3.3 million jobs at every epsilon, and fetching, comparing and sending them back from
    Python took 25 s at a tenth of it (docs/benchmarks.md, bench/final2017.py)."""
    batches = select(Batch.id).where(Batch.dataset_id == dataset.id)
    defenses = _accepted(session, dataset, defenses=True)
    if not defenses:
        return 0
    clean = (
        select(Submission.id, Batch.id)
        .join(Batch, true())
        .where(Submission.id.in_(defenses), Batch.dataset_id == dataset.id,
               ~exists().where(DefenseJob.submission_id == Submission.id, DefenseJob.batch_id == Batch.id,
                               DefenseJob.attack_job_id.is_(None)))
        .order_by(Submission.id, Batch.id)
    )
    attacked = (
        select(Submission.id, AttackJob.id, AttackJob.batch_id)
        .join(AttackJob, true())
        .where(Submission.id.in_(defenses), AttackJob.batch_id.in_(batches), AttackJob.status == JobStatus.DONE,
               AttackJob.submission_id.in_(_accepted(session, dataset, defenses=False)),
               ~exists().where(DefenseJob.submission_id == Submission.id, DefenseJob.attack_job_id == AttackJob.id))
        .order_by(Submission.id, AttackJob.id)
    )
    return (_insert_selected(session, DefenseJob.__table__, ["submission_id", "batch_id"], clean)
            + _insert_selected(session, DefenseJob.__table__, ["submission_id", "attack_job_id", "batch_id"], attacked))


def _insert_selected(session: Session, table: Table, columns: list[str], rows: Select) -> int:
    """Insert the selected rows another planner has not inserted meanwhile; return how many were new."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).from_select(columns, rows).on_conflict_do_nothing()
    return session.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def _insert_new(session: Session, table: Table, rows: list[dict]) -> int:
    """Insert the rows another planner has not inserted meanwhile; return how many were new."""
    if not rows:
        return 0
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return session.execute(dialect.insert(table).on_conflict_do_nothing(), rows).rowcount


def plan(session: Session, dataset: Dataset, epsilons: list[int], schedule: EpsilonSchedule) -> Plan:
    return Plan(plan_attack_jobs(session, dataset, epsilons, schedule), plan_defense_jobs(session, dataset))


def runnable(session: Session, dataset: Dataset, kind: JobKind, max_attempts: int) -> list[int]:
    """Jobs waiting to run: never run, or interrupted by a platform error (up to ``max_attempts``)."""
    job_class = kind.job_class
    query = (
        select(job_class.id)
        .join(Batch, job_class.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id, job_states.runnable(job_class, max_attempts))
        .order_by(job_class.id)
    )
    return list(session.scalars(query))


def expected_defense_jobs(session: Session, dataset: Dataset) -> int:
    """Defense jobs that unfinished attack jobs will bring, to size a progress bar honestly."""
    unfinished = session.scalar(
        select(func.count(AttackJob.id))
        .join(Batch, AttackJob.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id, job_states.unfinished(AttackJob))
    )
    return unfinished * len(_accepted(session, dataset, defenses=True))


def unfinished_jobs(session: Session, round_: Round) -> int:
    """Jobs of the round not done: those planned, and those planning adds now."""
    plan(session, round_.dataset, round_.epsilons, round_.eps_schedule)
    count = 0
    for kind in JobKind:
        job_class = kind.job_class
        count += session.scalar(
            select(func.count(job_class.id)).join(Batch, job_class.batch_id == Batch.id)
            .where(Batch.dataset_id == round_.dataset_id, job_states.unfinished(job_class))
        )
    return count


def held(session: Session, dataset: Dataset) -> int:
    """Jobs of the dataset (query jobs included) queued or running under someone's lease: a
    runner that finds nothing to do follows these until they finish or their lease runs out."""
    count = 0
    for job_class in (*(kind.job_class for kind in JobKind), QueryJob):
        count += session.scalar(
            select(func.count(job_class.id))
            .join(Batch, job_class.batch_id == Batch.id)
            .where(Batch.dataset_id == dataset.id, job_states.held(job_class))
        )
    return count


def forget(session: Session, submission: Submission | None = None) -> None:
    """Delete the jobs of one submission, or of all, so they run again; then their answers
    (no foreign key reaches them) and tallies. Jobs first: a job being stored holds its row
    lock, so its answers and counts are in by the time its row goes, and the deletes after
    it see them. An attack's attack jobs are locked before the defense jobs over them are
    deleted, so that no new defense job can be planned over them meanwhile."""
    if submission is None:
        session.execute(delete(DefenseJob))  # defense jobs first: they point at attack jobs
        answers.forget(session, None)
        session.execute(delete(AttackJob))
    elif submission.kind.is_attack:
        attack_jobs = select(AttackJob.id).where(AttackJob.submission_id == submission.id)
        session.execute(attack_jobs.with_for_update())
        gone = delete(DefenseJob).where(DefenseJob.attack_job_id.in_(attack_jobs)).returning(DefenseJob.id)
        answers.forget(session, session.scalars(gone).all())
        session.execute(delete(AttackJob).where(AttackJob.submission_id == submission.id))
    elif submission.kind is SubmissionKind.DEFENSE:
        gone = delete(DefenseJob).where(DefenseJob.submission_id == submission.id).returning(DefenseJob.id)
        answers.forget(session, session.scalars(gone).all())
    _forget_query_jobs(session, submission)
    tallies.forget(session, submission)


def _forget_query_jobs(session: Session, submission: Submission | None) -> None:
    """The query track's jobs of one submission (as the attack or the served defense), or all,
    and their results: they run again as the batch jobs do."""
    mine = true() if submission is None else or_(QueryJob.attack_id == submission.id, QueryJob.defense_id == submission.id)
    session.execute(delete(QueryResult).where(QueryResult.query_job_id.in_(select(QueryJob.id).where(mine))))
    session.execute(delete(QueryJob).where(mine))
