"""Checking submissions: their dry runs, run as jobs by whoever runs jobs.

An upload only stores the submission, ``queued`` with a ``DryRun`` job (``intake.submit``).
A runner (``arena run``, ``arena submit`` waiting for its own, the web's background runner
in the embedded mode) or a Celery worker claims the dry run like any job: attempt number
and lease (``job_states``), a heartbeat while its code is fetched, its images pinned and
its containers run (no database session open meanwhile), its result stored only under the
claim's token. The check pins the submission's images on the engine that runs
it, runs the first batch under its round's epsilons and time limit, and probes
determinism; the submission is then accepted or rejected with the report. A failure of
the platform (the engine, a missing image) leaves it queued and the job in ``error``: it
is tried again, up to ``ARENA_MAX_ATTEMPTS``, and the team uploads nothing again.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session

from arena import job_states, notifications
from arena.competition import rounds
from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.errors import PlatformError
from arena.execution import packing
from arena.execution.leases import heartbeat, still_held
from arena.intake.dry_run import ValidationReport, sample_batch, validate
from arena.intake.submit import take
from arena.models import DryRun, JobStatus, Round, Submission, SubmissionStatus
from arena.sandbox import pinning
from arena.sandbox.code import StoredSubmission, SubmissionCode

logger = logging.getLogger(__name__)

#: How often a wait for the workers looks at the submission again.
POLL_SECONDS = 1.0


class DryRunUnavailable(PlatformError):
    """The dry run could not run for the platform's own reason (the engine, the storage): the
    submission stays queued, to be checked again; its upload is not to be repeated."""

    public = ("the dry run could not run for a reason of the platform's (the organizers have the details in its "
              "log); the submission is kept, queued, and is checked again when a runner can: do not upload it again")


def waiting(settings: Settings) -> list[int]:
    """Dry runs a runner may take now, oldest first (not those of submissions organizers
    disqualified meanwhile)."""
    with transaction(settings) as session:
        return list(session.scalars(
            select(DryRun.id).join(Submission, DryRun.submission_id == Submission.id)
            .where(job_states.runnable(DryRun, settings.max_attempts), Submission.status == SubmissionStatus.QUEUED)
            .order_by(DryRun.id)))


def place_in_queue(session: Session, settings: Settings, submission: Submission) -> int | None:
    """1 when its dry run is the next to be taken, and so on; None once it is running or done
    (and, without a query, for every submission past its dry run: the pages ask for each)."""
    if submission.status is not SubmissionStatus.QUEUED:
        return None
    mine = submission.dry_run
    waits = job_states.runnable(DryRun, settings.max_attempts) | (DryRun.status == JobStatus.QUEUED)
    if mine is None or not session.scalar(select(func.count(DryRun.id)).where(DryRun.id == mine.id, waits)):
        return None
    return session.scalar(select(func.count(DryRun.id)).where(DryRun.id <= mine.id, waits))


def check_waiting(settings: Settings, worker_id: int | None = None) -> int:
    """Check every waiting submission, ``settings.concurrency`` at a time, oldest first (for
    the worker ``worker_id``); return how many were checked."""
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        return sum(done is not None for done in pool.map(lambda dry_run_id: check(settings, dry_run_id, worker_id),
                                                        waiting(settings)))


def check(settings: Settings, dry_run_id: int, worker_id: int | None = None) -> bool | None:
    """Claim the dry run (for the worker ``worker_id``) and run it: True when it completed
    (accepted or rejected), False when the platform failed it, None when someone else holds
    it or it is done."""
    claimed = _claim(settings, dry_run_id, worker_id)
    if claimed is None:
        return None
    token, run_settings, naming_key, submission, images, refuse_stateful = claimed
    # the batch, then the determinism probe's second run of it, each under the time limit
    renew_for = 2 * run_settings.time_limit(len(images)) + settings.lease_seconds
    try:
        # as a pack's (``pack_run.run_pack``): a download and a push, as long as the network makes them
        with heartbeat(settings, DryRun, {dry_run_id: token}, settings.prepare_seconds):
            code = SubmissionCode.stored(settings, submission, {})
            pins = pinning.pin(submission.meta, settings.registry)
        with heartbeat(settings, DryRun, {dry_run_id: token}, renew_for):
            report = validate(run_settings, code.pinned(pins), images, naming_key, refuse_stateful)
    except Exception as exc:  # noqa: BLE001 - whatever the platform raised, the job is retried
        logger.exception("the dry run %s failed on the platform", dry_run_id)
        _failed(settings, dry_run_id, token, exc)
        return False
    _record(settings, dry_run_id, token, report, pins)
    return True


@retry_while_unreachable
def _claim(settings: Settings, dry_run_id: int, worker_id: int | None):
    with transaction(settings) as session:
        taken = job_states.claim(session, DryRun, (dry_run_id,), settings.max_attempts, settings.lease_seconds,
                                 worker_id)
        if not taken:
            return None
        dry_run = session.get_one(DryRun, dry_run_id)
        round_ = session.get_one(Round, dry_run.round_id)
        return (taken[0][1], rounds.run_settings(settings, round_), rounds.naming_key(round_),
                StoredSubmission.of(dry_run.submission), sample_batch(session), round_.refuse_stateful_defenses)


@retry_while_unreachable
def _failed(settings: Settings, dry_run_id: int, token: int, error: Exception) -> None:
    with transaction(settings) as session:
        if dry_run := still_held(session, DryRun, dry_run_id, token):
            dry_run.error = f"{type(error).__name__}: {error}"
            job_states.fail(dry_run)


def _record(settings: Settings, dry_run_id: int, token: int, report: ValidationReport, pins: dict[str, str]) -> None:
    notice = _store_verdict(settings, dry_run_id, token, report, pins)
    if notice is not None:
        notifications.send(settings, notice)  # after the commit: the verdict is stored whatever the mail does


@retry_while_unreachable
def _store_verdict(settings: Settings, dry_run_id: int, token: int, report: ValidationReport,
                   pins: dict[str, str]) -> notifications.Notice | None:
    """Accept or reject under the claim's token; the team's notice when this decided it."""
    with transaction(settings) as session:
        dry_run = still_held(session, DryRun, dry_run_id, token)
        if dry_run is None:
            return None  # another runner took it over after our lease ran out: its result counts
        submission = dry_run.submission
        decided = submission.status is SubmissionStatus.QUEUED  # organizers may have disqualified it meanwhile
        if decided:
            submission.status = SubmissionStatus.ACCEPTED if report.passed else SubmissionStatus.REJECTED
            submission.reason = None if report.passed else "; ".join(report.problems) or "the dry run failed"
        store_dry_run(settings, submission, report, pins)
        job_states.finish(dry_run)
        return notifications.dry_run_done(session, submission) if decided else None


def store_dry_run(settings: Settings, submission: Submission, report: ValidationReport, pins: dict[str, str]) -> None:
    """What a dry run fixes for the submission's runs: the images it ran, their report, the
    determinism flag, and the images per container run."""
    submission.container_image, submission.container_gpu_image = pins["container"], pins.get("container_gpu")
    submission.validation_report = report.model_dump()
    submission.nondeterministic_share = report.determinism.share if report.determinism else None
    submission.pack_images = packing.pack_images(settings, submission.validation_report)
    _name_its_log(submission, report)


def _name_its_log(submission: Submission, report: ValidationReport) -> None:
    """The dry run's row names its run's full log; a re-pin's dry run replaces the one before."""
    dry_run = object_session(submission).scalar(select(DryRun).where(DryRun.submission_id == submission.id))
    if dry_run is not None:
        log = report.full_log
        dry_run.log_sha256, dry_run.log_size = (log.sha256, log.size) if log else (None, None)


def submit(settings: Settings, archive: Path, team: str, name: str | None = None,
           round_name: str | None = None) -> Submission:
    """Take an archive and check it here, at once, whatever the broker (the demo, the tests):
    the stored submission, accepted or rejected."""
    submission_id = take(settings, archive, team, name, round_name).id
    _check_here(settings, submission_id)
    return _checked(settings, submission_id)


def await_check(settings: Settings, submission_id: int) -> Submission:
    """The submission once its dry run is done (``arena submit`` in the foreground): sent to
    the workers' queue and waited for where there is a broker, run here where there is none."""
    if settings.broker_url:
        from arena.execution.broker import celery_app, enqueue_dry_runs  # Celery only where it is used

        enqueue_dry_runs(settings, celery_app(settings), [_dry_run_of(settings, submission_id)])
        while _status(settings, submission_id) is SubmissionStatus.QUEUED:
            time.sleep(POLL_SECONDS)
    else:
        _check_here(settings, submission_id)
    return _checked(settings, submission_id)


def _check_here(settings: Settings, submission_id: int) -> None:
    """Run the dry run in this process; a platform failure raises ``DryRunUnavailable`` and
    leaves the submission queued for the next runner."""
    dry_run_id = _dry_run_of(settings, submission_id)
    if check(settings, dry_run_id) is False:
        with transaction(settings) as session:
            error = session.get_one(DryRun, dry_run_id).error
        raise DryRunUnavailable(f"the dry run could not run: {error}; the submission stays queued")


def _dry_run_of(settings: Settings, submission_id: int) -> int:
    with transaction(settings) as session:
        return session.scalar(select(DryRun.id).where(DryRun.submission_id == submission_id))


def _checked(settings: Settings, submission_id: int) -> Submission:
    with transaction(settings) as session:
        submission = session.get_one(Submission, submission_id)
        session.refresh(submission, ["team", "dry_run"])
        return submission


def _status(settings: Settings, submission_id: int) -> SubmissionStatus:
    with transaction(settings) as session:
        return session.get_one(Submission, submission_id).status
