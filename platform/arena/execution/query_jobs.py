"""The query track's work: which (attack, served defense, batch) jobs a round is missing,
and running one, its results stored.

The grid, per round: the accepted query-track attacks entered in the round x the accepted
defenses entered in it that declare a ``serving_entry_point``, all pairs or the top K of
each side, x the round's batches, all or the first few (``query_pairs``). Planning inserts
the missing cells only, so a new entry adds its own row or column, as in the batch tracks.

A query job goes through the same states, leases and reaper as attack and defense jobs
(``job_states``, ``leases``): ``run_job`` claims it (its attempt number the fencing token,
with a lease and an attempt row, as every claim has), renews the lease while both
containers run, and stores its results only while the job still carries its token, so a
runner whose lease ran out and whose job was taken over stores nothing. Its attempt ends
with the attack's outcome, both containers' full logs (the attack's and the served
defense's stderr, ``data/logs.py``) and any platform error, whoever's results stand. A
platform failure (the engine gone) puts it in error, to be run again under the retry cap.
Every executor runs it: ``arena run``'s pool, the Celery workers (``broker``), and ``arena
query run`` here, one job after another. A query job is its own container run (two
containers): it is never packed with another.
"""

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena import job_states
from arena.competition import rounds
from arena.config import Settings
from arena.data import logs
from arena.db import retry_while_unreachable, transaction
from arena.errors import PlatformError
from arena.execution import query_pairs
from arena.execution.leases import Claim, claimed, failed_on_the_platform, heartbeat, still_held
from arena.execution.pack_run import finish_attempt, submission_code
from arena.models import (
    Batch,
    Dataset,
    Entry,
    JobAttempt,
    QueryJob,
    QueryResult,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from arena.sandbox.attack_run import CleanInput
from arena.sandbox.code import StoredSubmission
from arena.sandbox.query_run import QueryOutcome, QueryTask, execute_query_attack, time_limit


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
    if not attacks or not defenses:
        return 0  # every executor's turn asks: a round without the track reads no leaderboard
    orders = (query_pairs.attack_order(session, round_), query_pairs.defense_order(session, round_)) \
        if query_pairs.ranks_matter(len(attacks), len(defenses), round_.query_top_k) else ([], [])
    pairs = query_pairs.chosen_pairs(attacks, defenses, *orders, round_.query_top_k)
    existing = set(session.execute(select(QueryJob.attack_id, QueryJob.defense_id, QueryJob.batch_id)))
    missing = [(a, d, b) for (a, d), b in product(sorted(pairs), query_pairs.round_batches(session, round_))
               if (a, d, b) not in existing]
    session.add_all(QueryJob(attack_id=a, defense_id=d, batch_id=b) for a, d, b in missing)
    return len(missing)


def runnable(session: Session, settings: Settings, dataset: Dataset) -> list[int]:
    """Plan the dataset's round's missing query jobs; return those waiting for a runner
    (never run, or failed on the platform under the retry cap). The caller's turn reaps."""
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is None:
        return []
    plan(session, round_)
    return list(session.scalars(
        select(QueryJob.id).join(Batch, Batch.id == QueryJob.batch_id)
        .where(Batch.dataset_id == dataset.id, job_states.runnable(QueryJob, settings.max_attempts))
        .order_by(QueryJob.id)))


def unfinished(session: Session, round_: Round) -> int:
    """The round's query jobs not done, those planning adds now included: a round with one is
    not ready to publish, as with the batch tracks' (``planning.unfinished_jobs``)."""
    plan(session, round_)
    return session.scalar(select(func.count(QueryJob.id)).join(Batch, Batch.id == QueryJob.batch_id)
                          .where(Batch.dataset_id == round_.dataset_id, job_states.unfinished(QueryJob)))


@dataclass(frozen=True)
class _Claimed:
    held: Claim
    settings: Settings  # the round's
    prepare: Callable[[], QueryTask]  # makes both submissions' code and images present: no transaction open


def _task(settings: Settings, job: QueryJob, round_: Round) -> Callable[[], QueryTask]:
    """What the job runs, read from its rows: a call that makes both submissions' code and
    images present on this host (a download, a pull) and gives the task, made once the
    claim's transaction has ended, under the lease (as a pack's: ``pack_run.run_pack``)."""
    inputs = [CleanInput(i.id, i.sha256, i.target_class, i.name) for i in job.batch.images]
    attack, defense = StoredSubmission.of(job.attack), StoredSubmission.of(job.defense)
    epsilons, budget, seconds, naming_key = (list(round_.epsilons), round_.query_budget, round_.seconds_per_image,
                                             rounds.naming_key(round_))

    def prepared() -> QueryTask:
        return QueryTask(submission_code(settings, attack), submission_code(settings, defense), inputs, epsilons,
                         budget, seconds, naming_key)

    return prepared


@retry_while_unreachable
def _claim(settings: Settings, job_id: int, worker_id: int | None) -> _Claimed | None:
    """Claim the job (``job_states.claim``, under the retry cap) and load what it runs; None
    when it is done, past the cap, or held by another runner."""
    with transaction(settings) as session:
        taken = claimed(session, settings, QueryJob, (job_id,), worker_id)
        if not taken:
            return None
        job = session.get_one(QueryJob, job_id)
        session.get_one(JobAttempt, taken[job_id].attempt_id).images = len(job.batch.images)
        round_ = rounds.of_dataset(session, job.batch.dataset_id)
        run_settings = rounds.run_settings(settings, round_)
        return _Claimed(taken[job_id], run_settings, _task(run_settings, job, round_))


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
    job_states.finish(job)


@dataclass(frozen=True)
class _KeptLogs:
    """Both containers' full logs in the store: the attack's and the served defense's."""

    attack: logs.KeptLog | None
    defense: logs.KeptLog | None


def _ended(attempt: JobAttempt, outcome: QueryOutcome, kept: _KeptLogs, notes: list[str]) -> None:
    """The attempt ended as the batch tracks' end (``pack_run.finish_attempt``: the attack's
    run and log), with the served defense's full log beside the attack's."""
    finish_attempt(attempt, outcome.attack_run, notes + outcome.problems, kept.attack)
    attempt.served_log_sha256, attempt.served_log_size = (kept.defense.sha256, kept.defense.size) if kept.defense \
        else (None, None)


@retry_while_unreachable
def _stored(settings: Settings, job_id: int, held: Claim, task: QueryTask, outcome: QueryOutcome,
            kept: _KeptLogs) -> bool:
    with transaction(settings) as session:
        attempt = session.get_one(JobAttempt, held.attempt_id)
        job = still_held(session, QueryJob, job_id, held.token)
        if job is None:  # its lease ran out and another runner took it over: that runner's results stand
            _ended(attempt, outcome, kept, ["another attempt took this job over: results dropped"])
            return False
        _ended(attempt, outcome, kept, [])
        _store(session, job, task, outcome)
        return True


def run_job(settings: Settings, job_id: int, worker_id: int | None = None) -> bool:
    """Run one query job if no one else holds it (for the worker ``worker_id``), its lease
    renewed while it runs; True when this call stored its results. A platform failure marks
    it ``error`` (run again under the retry cap) and is raised."""
    taken = _claim(settings, job_id, worker_id)
    if taken is None:
        return False
    tokens = {job_id: taken.held.token}
    try:
        with heartbeat(settings, QueryJob, tokens, settings.prepare_seconds):
            task = taken.prepare()
        with heartbeat(settings, QueryJob, tokens, time_limit(taken.settings, task) + settings.lease_seconds):
            outcome = execute_query_attack(taken.settings, task)
        kept = _KeptLogs(logs.keep(settings, outcome.attack_run.log), logs.keep(settings, outcome.defense_full_log))
    except PlatformError as exc:  # the engine, the store: the job runs again, none is blamed
        failed_on_the_platform(settings, QueryJob, {job_id: taken.held}, exc)
        raise
    return _stored(settings, job_id, taken.held, task, outcome, kept)


def run_pending(settings: Settings, round_name: str | None = None,
                progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Plan the round's query jobs and run those waiting, here, one after another; return how many ran."""
    with transaction(settings) as session:
        job_states.reap(session)
        jobs = runnable(session, settings, rounds.find(session, round_name).dataset)
    ran = 0
    for done, job_id in enumerate(jobs):
        progress(done, len(jobs))
        ran += run_job(settings, job_id)
    progress(len(jobs), len(jobs))
    return ran
