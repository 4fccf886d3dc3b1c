"""The query track's work: which (attack, served defense, batch) jobs a round is missing,
and running one, its results stored.

The grid, per round: the accepted query-track attacks entered in the round x the accepted
defenses entered in it that declare a ``serving_entry_point``, all pairs or the top K of
each side, x the round's batches, all or the first few (``query_pairs``). Planning inserts
the missing cells only, so a new entry adds its own row or column, as in the batch tracks.

A job runs in-process (``run_pending``): pending -> running (its attempt number the fencing
token) -> done, each move a guarded update, and results are written only by the attempt
that claimed the job. A platform failure (the engine gone) puts it in error, to be run again.
"""

from collections.abc import Callable
from itertools import product

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arena.competition import rounds
from arena.config import Settings
from arena.db import transaction
from arena.errors import PlatformError
from arena.execution import query_pairs
from arena.execution.pack_run import submission_code
from arena.models import (
    Batch,
    Entry,
    JobStatus,
    QueryJob,
    QueryResult,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    utcnow,
)
from arena.sandbox.attack_run import CleanInput
from arena.sandbox.code import StoredSubmission
from arena.sandbox.query_run import QueryOutcome, QueryTask, execute_query_attack


def _entered(session: Session, round_: Round, kinds: list[SubmissionKind]) -> list[Submission]:
    query = (select(Submission).join(Entry, Entry.submission_id == Submission.id)
             .where(Entry.round_id == round_.id, Submission.kind.in_(kinds), Submission.status == SubmissionStatus.ACCEPTED))
    return list(session.scalars(query.order_by(Submission.id)))


def served_defenses(session: Session, round_: Round) -> list[Submission]:
    """The round's accepted defenses that answer queries."""
    return [d for d in _entered(session, round_, [SubmissionKind.DEFENSE]) if d.meta.get("serving_entry_point")]


def plan(session: Session, round_: Round) -> int:
    """Insert the round's missing query jobs, for the pairs and batches it chose
    (``query_pairs``); return how many."""
    attacks = [a.id for a in _entered(session, round_, [SubmissionKind.QUERY_ATTACK, SubmissionKind.QUERY_TARGETED])]
    defenses = [d.id for d in served_defenses(session, round_)]
    orders = (query_pairs.attack_order(session, round_), query_pairs.defense_order(session, round_)) \
        if round_.query_top_k is not None else ([], [])
    pairs = query_pairs.chosen_pairs(attacks, defenses, *orders, round_.query_top_k)
    existing = set(session.execute(select(QueryJob.attack_id, QueryJob.defense_id, QueryJob.batch_id)))
    missing = [(a, d, b) for (a, d), b in product(sorted(pairs), query_pairs.round_batches(session, round_))
               if (a, d, b) not in existing]
    session.add_all(QueryJob(attack_id=a, defense_id=d, batch_id=b) for a, d, b in missing)
    return len(missing)


def _claim(session: Session, job_id: int) -> int | None:
    """Move a pending (or failed) job to running; its new attempt number, None when another runner has it."""
    claimed = session.execute(
        update(QueryJob).where(QueryJob.id == job_id, QueryJob.status.in_([JobStatus.PENDING, JobStatus.ERROR]))
        .values(status=JobStatus.RUNNING, attempt=QueryJob.attempt + 1).returning(QueryJob.attempt)
    ).scalar_one_or_none()
    return claimed


def _task(session: Session, job: QueryJob) -> Callable[[Settings], QueryTask]:
    """What the job runs, read from its rows: a call that makes both submissions' code and
    images present on this host (a download, a pull: made with no transaction open) and gives
    the task."""
    round_ = session.scalars(select(Round).where(Round.dataset_id == job.batch.dataset_id)).one()
    inputs = [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in job.batch.images]
    attack, defense = StoredSubmission.of(job.attack), StoredSubmission.of(job.defense)
    epsilons, budget, seconds, naming_key = (list(round_.epsilons), round_.query_budget, round_.seconds_per_image,
                                             rounds.naming_key(round_))

    def prepared(settings: Settings) -> QueryTask:
        return QueryTask(submission_code(settings, attack), submission_code(settings, defense), inputs, epsilons,
                         budget, seconds, naming_key)

    return prepared


def _store(session: Session, job: QueryJob, task: QueryTask, outcome: QueryOutcome) -> None:
    run = outcome.attack_run
    job.budget, job.seconds = task.budget, round(run.seconds, 2)
    job.attack_exit_code, job.attack_timed_out = run.exit_code, run.timed_out
    job.defense_failure, job.problems = outcome.defense_failure, outcome.problems
    job.attack_log, job.defense_log = run.log_tail, outcome.defense_log
    session.add_all(QueryResult(
        query_job_id=job.id, image_id=r.image_id, queries=r.queries, refused=r.refused, sha256=r.sha256,
        linf=r.linf, l2=r.l2, missing=r.missing, label=r.label, labels_at={str(e): label for e, label in r.labels_at.items()},
    ) for r in outcome.results)
    job.status, job.finished_at = JobStatus.DONE, utcnow()


def run_job(settings: Settings, job_id: int) -> bool:
    """Run one query job if no one else has it; True when this call ran it to the end."""
    with transaction(settings) as session:
        attempt = _claim(session, job_id)
        if attempt is None:
            return False
        prepare = _task(session, session.get_one(QueryJob, job_id))
    try:
        task = prepare(settings)
        outcome = execute_query_attack(settings, task)
    except PlatformError:
        with transaction(settings) as session:
            session.execute(update(QueryJob).where(QueryJob.id == job_id, QueryJob.attempt == attempt)
                            .values(status=JobStatus.ERROR))
        raise
    with transaction(settings) as session:
        job = session.get_one(QueryJob, job_id)
        if job.attempt != attempt or job.status is not JobStatus.RUNNING:
            return False  # another runner took it over meanwhile: its results stand
        _store(session, job, task, outcome)
    return True


def run_pending(settings: Settings, round_name: str | None = None,
                progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Plan the round's query jobs and run those not done, one after another; return how many ran."""
    with transaction(settings) as session:
        round_ = rounds.find(session, round_name)
        plan(session, round_)
        run_settings = rounds.run_settings(settings, round_)
        jobs = list(session.scalars(
            select(QueryJob.id).join(Batch, Batch.id == QueryJob.batch_id)
            .where(Batch.dataset_id == round_.dataset_id, QueryJob.status != JobStatus.DONE).order_by(QueryJob.id)))
    ran = 0
    for done, job_id in enumerate(jobs):
        progress(done, len(jobs))
        ran += run_job(run_settings, job_id)
    progress(len(jobs), len(jobs))
    return ran
