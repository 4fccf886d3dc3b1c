"""A job's states, and the only statements that move a job between them.

::

    pending ──queue──► queued ──claim──► running ──finish──► done
       (a dry run is born running, held by its upload until its code is in)
       ▲                 │                 │ │
       └──── reap ───────┴─────────────────┘ └──platform failure──► error
       ▲                                   │                          │
       └──── put back (the pack split) ────┘     claim, under the retry cap

Every reader asks the predicates here (what is waiting, runnable, held, claimable,
unfinished, done) and every writer calls the transitions here, so that the planner,
the claimers, the reaper, the broker and the round's publish check cannot disagree
about what a state means. Each transition is a guarded statement: it moves only jobs in
the states it comes from, so two processes racing on one job cannot both move it.
"""

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, true, update
from sqlalchemy.orm import Session

from arena.models import AttackJob, DefenseJob, DryRun, JobAttempt, JobStatus, QueryJob, Worker, utcnow

Job = AttackJob | DefenseJob | DryRun | QueryJob
JobClass = type[AttackJob] | type[DefenseJob] | type[DryRun] | type[QueryJob]

# States a run still waits on: a job in them will move again (error jobs are settled when
# past the retry cap, and the planner repacks those under it).
UNSETTLED = (JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING)

#: Why a running job went back to pending without its worker saying so.
REAPED = ("its worker stopped renewing the lease (the worker was killed, its host went away, or the run was stuck past "
          "its time limit): the job runs again")


def lease_until(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


# --- predicates -------------------------------------------------------------------------


def done(job_class: JobClass) -> ColumnElement[bool]:
    return job_class.status == JobStatus.DONE


def unfinished(job_class: JobClass) -> ColumnElement[bool]:
    """Anything but done, failed jobs included: a round with one is not ready to publish."""
    return job_class.status != JobStatus.DONE


def failed(job_class: JobClass) -> ColumnElement[bool]:
    """Failed on the platform (not by the submission's fault), to be tried again under the cap."""
    return job_class.status == JobStatus.ERROR


def held(job_class: JobClass) -> ColumnElement[bool]:
    """Queued for a worker or running: someone holds the job under a lease."""
    return job_class.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])


def held_for_upload() -> ColumnElement[bool]:
    """A dry run whose upload is still installing its code (``hold_for_upload``): no claim has
    bumped its attempt yet, so its code may not be in place."""
    return (DryRun.status == JobStatus.RUNNING) & (DryRun.attempt == 0)


def lease_ran_out(job_class: JobClass) -> ColumnElement[bool]:
    """Held under a lease that ran out: its runner died, or its queue message was lost."""
    return held(job_class) & (job_class.lease_expires_at < utcnow())


def runnable(job_class: JobClass, max_attempts: int) -> ColumnElement[bool]:
    """Waiting for a runner: never run, or failed on the platform fewer than ``max_attempts`` times."""
    failed_again = (job_class.status == JobStatus.ERROR) & (job_class.attempt < max_attempts)
    return (job_class.status == JobStatus.PENDING) | failed_again


def claimable(job_class: JobClass, max_attempts: int) -> ColumnElement[bool]:
    """What a runner may take: a runnable job, one queued for it, or one whose lease ran out.
    A job past the retry cap is never taken, even by a late or repeated queue message."""
    return runnable(job_class, max_attempts) | (job_class.status == JobStatus.QUEUED) | lease_ran_out(job_class)


def taking_work(worker_id: int | None) -> ColumnElement[bool]:
    """The worker takes new jobs: an organizer has not drained it (a runner that is no
    registered worker always does). Asked by the claim itself, so that from the drain's
    commit on, the worker starts nothing new, whenever its heartbeat reads the flag."""
    if worker_id is None:
        return true()
    return ~exists().where(Worker.id == worker_id, Worker.draining)


# --- transitions ------------------------------------------------------------------------


def claim(session: Session, job_class: JobClass, job_ids: tuple[int, ...], max_attempts: int,
          lease_seconds: float, worker_id: int | None = None) -> list[tuple[int, int]]:
    """Running, with the attempt number bumped (the fencing token), a lease and the worker
    that holds it, for those of the jobs still claimable, in one statement; return (job id,
    token) for each taken. A drained worker takes none."""
    statement = (
        update(job_class)
        .where(job_class.id.in_(job_ids), claimable(job_class, max_attempts), taking_work(worker_id))
        .values(status=JobStatus.RUNNING, attempt=job_class.attempt + 1, lease_expires_at=lease_until(lease_seconds),
                worker_id=worker_id)
        .returning(job_class.id, job_class.attempt)
    )
    return [(job_id, token) for job_id, token in session.execute(statement).all()]


def queue(session: Session, job_class: JobClass, job_ids: tuple[int, ...], max_attempts: int,
          lease_seconds: float) -> None:
    """Handed to the broker: queued, with a lease in case the message is lost."""
    session.execute(
        update(job_class)
        .where(job_class.id.in_(job_ids), runnable(job_class, max_attempts))
        .values(status=JobStatus.QUEUED, lease_expires_at=lease_until(lease_seconds))
    )


def reap(session: Session) -> int:
    """Jobs whose lease ran out go back to pending; a job under a live lease, or finished,
    is never touched. A running job's open attempt (or a dry run) is marked with why, so
    that the submission page shows a run that was taken away rather than one that vanished.
    Returns how many went back."""
    released = 0
    for job_class in (AttackJob, DefenseJob, DryRun, QueryJob):
        running = _release(session, job_class, job_class.status == JobStatus.RUNNING)
        _mark_reaped(session, job_class, running)
        released += len(running) + len(_release(session, job_class, job_class.status == JobStatus.QUEUED))
    return released


def _release(session: Session, job_class: JobClass, where: ColumnElement[bool]) -> list[int]:
    statement = (update(job_class).where(lease_ran_out(job_class), where)
                 .values(status=JobStatus.PENDING, lease_expires_at=None).returning(job_class.id))
    return list(session.scalars(statement))


def _mark_reaped(session: Session, job_class: JobClass, job_ids: list[int]) -> None:
    if not job_ids:
        return
    if job_class is DryRun:
        session.execute(update(DryRun).where(DryRun.id.in_(job_ids)).values(error=REAPED))
        return
    column = JobAttempt.job_column(job_class)
    session.execute(update(JobAttempt).where(column.in_(job_ids), JobAttempt.ended_at.is_(None))
                    .values(ended_at=utcnow(), error=REAPED))


def hold_for_upload(job: DryRun, lease_seconds: float) -> None:
    """A new dry run, held by the upload that makes it until the code is installed (then
    ``put_back``): no runner takes it before, and if the upload dies its lease runs out."""
    job.status, job.attempt, job.lease_expires_at = JobStatus.RUNNING, 0, lease_until(lease_seconds)


def holds(job: Job, token: int) -> bool:
    """Whether the job still runs under the claim with this fencing token."""
    return job.status is JobStatus.RUNNING and job.attempt == token


def finish(job: Job) -> None:
    """Its results are stored (the caller checked ``holds`` on the locked row)."""
    job.status, job.finished_at, job.lease_expires_at = JobStatus.DONE, utcnow(), None


def fail(job: Job) -> None:
    """The platform failed it: it runs again while under the retry cap."""
    job.status, job.lease_expires_at = JobStatus.ERROR, None


def put_back(job: Job) -> None:
    """Its pack failed before it was complete: it waits to run again in a smaller pack."""
    job.status, job.lease_expires_at = JobStatus.PENDING, None
