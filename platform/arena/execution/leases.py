"""Who holds a job: claims, leases, heartbeats and fencing tokens.

One rule for every executor (in-process threads, another ``arena run``, the web's Run
button, Celery workers): a job is claimed before it runs, which bumps its attempt number
(the fencing token) and gives it a lease; a heartbeat renews the lease while the
container runs; results are stored only while the job still carries the claimer's token.
A job whose lease ran out (its runner died, its queue message was lost) goes back to
pending when the reaper passes (``job_states.reap``), and nothing else ever takes a job
from a live lease. The states themselves and their moves live in ``job_states``.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arena import job_states
from arena.config import Settings
from arena.db import retry_while_unreachable, transaction
from arena.models import JobAttempt, JobKind, utcnow


@dataclass(frozen=True)
class Claim:
    """A job this runner holds: its attempt row and its fencing token."""

    attempt_id: int
    token: int


@retry_while_unreachable
def claim(settings: Settings, kind: JobKind, job_ids: tuple[int, ...], worker_id: int | None = None
          ) -> dict[int, Claim]:
    """Claim what nobody else holds, in one statement (two claimers never both win a job);
    return the claims by job id (``claimed``). Its image count is filled in when the pack's
    inputs are loaded."""
    with transaction(settings) as session:
        return claimed(session, settings, kind.job_class, job_ids, worker_id)


def claimed(session: Session, settings: Settings, job_class: job_states.JobClass, job_ids: tuple[int, ...],
            worker_id: int | None) -> dict[int, Claim]:
    """Claim the jobs (``job_states.claim``, under the retry cap) in the caller's transaction,
    each with an attempt row naming the worker, the one place every kind of job gets its
    attempts; the attempts claimed together are one container run (``run_id``)."""
    tokens = job_states.claim(session, job_class, job_ids, settings.max_attempts, settings.lease_seconds, worker_id)
    attempts = [JobAttempt(number=token, pack_jobs=len(tokens), worker_id=worker_id,
                           **{JobAttempt.job_column(job_class).key: job_id}) for job_id, token in tokens]
    session.add_all(attempts)
    session.flush()
    claims = {}
    for attempt, (job_id, token) in zip(attempts, tokens):
        attempt.run_id = attempts[0].id  # one container run: the web shows it as one row
        claims[job_id] = Claim(attempt.id, token)
    return claims


@contextmanager
def heartbeat(settings: Settings, job_class: job_states.JobClass, tokens: dict[int, int],
              renew_for: float) -> Iterator[None]:
    """Renew the leases of the jobs held under these tokens (by job id) while their container
    runs, so only a dead runner's jobs expire, but for ``renew_for`` seconds at most: a run
    past its time limit is stuck (the container's watchdog kills it at the limit), and its
    jobs must go to the reaper rather than stay running for as long as its process lives."""
    stop = threading.Event()
    until = time.monotonic() + renew_for

    def beat() -> None:
        while not stop.wait(settings.lease_seconds / 4) and time.monotonic() < until:
            with transaction(settings) as session:
                for job_id, token in tokens.items():
                    session.execute(
                        update(job_class)
                        .where(job_class.id == job_id, job_class.attempt == token)
                        .values(lease_expires_at=job_states.lease_until(settings.lease_seconds))
                    )

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def still_held(session: Session, job_class: job_states.JobClass, job_id: int, token: int) -> job_states.Job | None:
    """The job, locked, if it still runs under this fencing token; None when someone took over."""
    job = session.scalar(select(job_class).where(job_class.id == job_id).with_for_update())
    return job if job is not None and job_states.holds(job, token) else None


@retry_while_unreachable
def failed_on_the_platform(settings: Settings, job_class: job_states.JobClass, claims: dict[int, Claim],
                           error: Exception) -> None:
    """The claims' attempts ended with the platform's ``error``, and their jobs still held by
    them in error, to run again under the retry cap: a pack's, or a query job's."""
    with transaction(settings) as session:
        for job_id, held in claims.items():
            attempt = session.get_one(JobAttempt, held.attempt_id)
            attempt.ended_at, attempt.error = utcnow(), str(error)
            if job := still_held(session, job_class, job_id, held.token):
                job_states.fail(job)


