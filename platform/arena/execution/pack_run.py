"""Running a pack of planned jobs in one container and recording what came of each job.

Every executor, in-process or on a worker, calls ``run_pack``: load the jobs' inputs,
run the container once over all of them with no database session open (runs take
minutes), then store each job's results in one transaction. A pack is jobs of one
submission (and one epsilon, for attacks); a pack of one job is the plain case.

Exactly-once results under at-least-once delivery: a job is *claimed* before it runs,
which bumps its attempt number (the fencing token) and gives it a lease that a heartbeat
renews while the container runs. A job already done, or running under a live lease, is
not claimed again; results are stored only while the job still carries the claimer's
token, and unique constraints refuse anything stored twice. A worker that dies leaves a
lease that runs out, and the reaper (scheduler.reap) hands the job to someone else.

What a failed pack keeps: when the container crashes or times out, each job whose images
all got an output (attacks) or an answer (defenses) is kept; the others are split in two
and run again, so a bad batch ends up alone and only its own results carry the failure.
A platform failure (no engine, missing image) marks the jobs ``error``: planned again.
"""

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.db import bulk_insert, retry_while_unreachable, transaction
from arena.intake.metadata import Metadata, SubmissionCode
from arena.models import (
    AdversarialImage,
    AttackJob,
    Classification,
    ClassificationProblem,
    DefenseJob,
    Image,
    JobAttempt,
    JobStatus,
    Submission,
    utcnow,
)
from arena.results import tallies
from arena.sandbox.attack_run import AttackOutcome, CleanInput, execute_attack
from arena.sandbox.containers import RunResult, SandboxError
from arena.sandbox.defense_run import DefenseInput, DefenseOutcome, execute_defense

#: Where each kind of job's per-image results go.
RESULT_MODEL = {"attack": AdversarialImage, "defense": Classification}


@dataclass(frozen=True)
class Pack:
    """Jobs of one kind and one submission (and epsilon) to run in one container."""

    kind: str  # "attack" or "defense"
    job_ids: tuple[int, ...]

    @property
    def job_class(self) -> type[AttackJob] | type[DefenseJob]:
        return AttackJob if self.kind == "attack" else DefenseJob

    def halves(self) -> list["Pack"]:
        """Two packs of half the jobs each; a pack of one job cannot be split and stays whole."""
        if len(self.job_ids) < 2:
            return [self]
        middle = len(self.job_ids) // 2
        return [Pack(self.kind, self.job_ids[:middle]), Pack(self.kind, self.job_ids[middle:])]


@dataclass
class PackResult:
    """What a pack run left: jobs finished, packs to run again, a platform error if any."""

    finished: int = 0
    again: list[Pack] = field(default_factory=list)
    platform_error: str | None = None


@dataclass
class JobShare:
    """One job's part of a pack's outcome: the rows to store (plain dicts, inserted in bulk)
    and whether they are complete."""

    rows: list[dict]
    complete: bool


def submission_code(settings: Settings, submission: Submission) -> SubmissionCode:
    return SubmissionCode(settings.submissions_dir / submission.sha256, Metadata.model_validate(submission.meta))


def _attempt_column(job_class: type) -> str:
    return "attack_job_id" if job_class is AttackJob else "defense_job_id"


def _lease(settings: Settings) -> datetime:
    return utcnow() + timedelta(seconds=settings.lease_seconds)


@retry_while_unreachable
def _claim(settings: Settings, pack: Pack, images: int) -> dict[int, tuple[int, int]]:
    """Claim what nobody else holds; return job id -> (attempt row id, fencing token)."""
    job_class, column = pack.job_class, _attempt_column(pack.job_class)
    claimable = job_class.status.in_([JobStatus.PENDING, JobStatus.QUEUED, JobStatus.ERROR]) | (
        (job_class.status == JobStatus.RUNNING) & (job_class.lease_expires_at < utcnow())
    )
    claimed = {}
    with transaction(settings) as session:
        tokens = session.execute(
            update(job_class)
            .where(job_class.id.in_(pack.job_ids), claimable)
            .values(status=JobStatus.RUNNING, attempt=job_class.attempt + 1, lease_expires_at=_lease(settings))
            .returning(job_class.id, job_class.attempt)
        ).all()
        for job_id, token in tokens:
            attempt = JobAttempt(number=token, images=images, pack_jobs=len(pack.job_ids), **{column: job_id})
            session.add(attempt)
            session.flush()
            claimed[job_id] = (attempt.id, token)
    return claimed


@contextmanager
def _heartbeat(settings: Settings, pack: Pack, claimed: dict[int, tuple[int, int]]) -> Iterator[None]:
    """Renew the leases while the container runs, so only a dead worker's jobs expire."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.lease_seconds / 4):
            with transaction(settings) as session:
                for job_id, (_, token) in claimed.items():
                    session.execute(
                        update(pack.job_class)
                        .where(pack.job_class.id == job_id, pack.job_class.attempt == token)
                        .values(lease_expires_at=_lease(settings))
                    )

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _finish_attempt(attempt: JobAttempt, run: RunResult, problems: list[str]) -> None:
    attempt.ended_at = utcnow()
    attempt.seconds = run.seconds
    attempt.exit_code = run.exit_code
    attempt.timed_out = run.timed_out
    attempt.killed_reason = run.killed_reason
    attempt.log_excerpt = "".join(f"[arena] {p}\n" for p in problems) + run.log_tail


def _current(session: Session, job_class: type, job_id: int, token: int):
    """The job, locked, if it is still running under this token; None when someone took over."""
    job = session.scalar(select(job_class).where(job_class.id == job_id).with_for_update())
    return job if job.status is JobStatus.RUNNING and job.attempt == token else None


@retry_while_unreachable
def _platform_failed(settings: Settings, pack: Pack, claimed: dict[int, tuple[int, int]], error: Exception) -> None:
    with transaction(settings) as session:
        for job_id, (attempt_id, token) in claimed.items():
            attempt = session.get(JobAttempt, attempt_id)
            attempt.ended_at, attempt.error = utcnow(), str(error)
            if job := _current(session, pack.job_class, job_id, token):
                job.status, job.lease_expires_at = JobStatus.ERROR, None


# --- loading a pack and sharing its outcome out among its jobs -------------------------

Loaded = tuple[Callable[[], Any], int, Callable[[Any], dict[int, JobShare]]]


def _load_attack_pack(settings: Settings, session: Session, jobs: list[AttackJob]) -> Loaded:
    code = submission_code(settings, jobs[0].submission)
    job_of = {}
    inputs = []
    for job in jobs:
        for image in job.batch.images:
            inputs.append(CleanInput(image.id, image.sha256, image.target_class))
            job_of[image.id] = job.id

    def share(outcome: AttackOutcome) -> dict[int, JobShare]:
        shares = {job.id: JobShare([], True) for job in jobs}
        for result in outcome.results:
            piece = shares[job_of[result.image_id]]
            piece.rows.append(dict(attack_job_id=job_of[result.image_id], **asdict(result)))
            piece.complete &= not result.missing
        return shares

    return (lambda: execute_attack(settings, code, inputs, jobs[0].epsilon)), len(inputs), share


def _defense_inputs(session: Session, jobs: list[DefenseJob]) -> list[list[tuple[int, str, int | None]]]:
    """For each job, (image id, sha256 to show, adversarial image id) of every image it covers;
    two queries for the whole pack (clean batches, attack outputs) rather than one per job."""
    clean = {job.batch_id for job in jobs if job.attack_job_id is None}
    attacked = {job.attack_job_id for job in jobs if job.attack_job_id is not None}
    of_batch, of_attack = defaultdict(list), defaultdict(list)
    if clean:
        query = select(Image.batch_id, Image.id, Image.sha256).where(Image.batch_id.in_(clean)).order_by(Image.id)
        for batch_id, image_id, sha256 in session.execute(query):
            of_batch[batch_id].append((image_id, sha256, None))
    if attacked:
        query = (
            select(AdversarialImage.attack_job_id, AdversarialImage.image_id, AdversarialImage.sha256, AdversarialImage.id)
            .where(AdversarialImage.attack_job_id.in_(attacked))
            .order_by(AdversarialImage.id)
        )
        for attack_job_id, image_id, sha256, adversarial_id in session.execute(query):
            of_attack[attack_job_id].append((image_id, sha256, adversarial_id))
    return [of_batch[job.batch_id] if job.attack_job_id is None else of_attack[job.attack_job_id] for job in jobs]


def _load_defense_pack(settings: Settings, session: Session, jobs: list[DefenseJob]) -> Loaded:
    code = submission_code(settings, jobs[0].submission)
    defense_id = jobs[0].submission_id
    inputs, origin = [], {}  # origin: input key -> (job id, image id, adversarial image id)
    for job, covered in zip(jobs, _defense_inputs(session, jobs)):
        for image_id, sha256, adversarial_id in covered:
            key = len(inputs)
            inputs.append(DefenseInput(key, sha256))
            origin[key] = (job.id, image_id, adversarial_id)

    def share(outcome: DefenseOutcome) -> dict[int, JobShare]:
        shares = {job.id: JobShare([], True) for job in jobs}
        for key, answer in outcome.answers.items():
            job_id, image_id, adversarial_id = origin[key]
            shares[job_id].rows.append(
                {"defense_job_id": job_id, "defense_id": defense_id, "image_id": image_id,
                 "adversarial_image_id": adversarial_id, "label": answer.label, "problem": answer.problem}
            )
            shares[job_id].complete &= answer.problem is not ClassificationProblem.MISSING
        return shares

    return (lambda: execute_defense(settings, code, inputs)), len(inputs), share


# --- running a pack ---------------------------------------------------------------------


def run_pack(settings: Settings, pack: Pack) -> PackResult:
    loader = _load_attack_pack if pack.kind == "attack" else _load_defense_pack
    with transaction(settings) as session:
        execute, images, share = loader(settings, session, [session.get(pack.job_class, j) for j in pack.job_ids])
    claimed = _claim(settings, pack, images)
    if not claimed:
        return PackResult()  # done already, or running elsewhere
    if len(claimed) < len(pack.job_ids):  # a duplicate delivery raced us for some: run the rest
        pack = Pack(pack.kind, tuple(j for j in pack.job_ids if j in claimed))
        with transaction(settings) as session:
            execute, images, share = loader(settings, session, [session.get(pack.job_class, j) for j in pack.job_ids])
            attempts = [attempt_id for attempt_id, _ in claimed.values()]  # they counted the whole pack
            session.execute(update(JobAttempt).where(JobAttempt.id.in_(attempts)).values(images=images, pack_jobs=len(claimed)))
    try:
        with _heartbeat(settings, pack, claimed):
            outcome = execute()
    except SandboxError as exc:
        _platform_failed(settings, pack, claimed, exc)
        return PackResult(platform_error=f"{pack.kind} jobs {list(pack.job_ids)}: {exc}")
    shares = share(outcome)
    retry = [] if outcome.run.succeeded or len(pack.job_ids) == 1 else [j for j in pack.job_ids if not shares[j].complete]
    stored = _store(settings, pack, claimed, outcome, shares, retry)
    again = Pack(pack.kind, tuple(retry)).halves() if retry else []
    return PackResult(finished=stored, again=again)


@retry_while_unreachable
def _store(settings: Settings, pack: Pack, claimed: dict[int, tuple[int, int]], outcome, shares: dict[int, JobShare],
           retry: list[int]) -> int:
    """Every kept job's rows, attempt and status in one transaction, each only while the job
    still carries our token, and for defense jobs their counts added to the tallies; return
    how many jobs were stored."""
    packed = [f"ran in a pack of {len(pack.job_ids)} jobs"] if len(pack.job_ids) > 1 else []
    kept, rows = [], []
    with transaction(settings) as session:
        for job_id, piece in shares.items():
            attempt_id, token = claimed[job_id]
            attempt = session.get(JobAttempt, attempt_id)
            job = _current(session, pack.job_class, job_id, token)
            if job is None:
                _finish_attempt(attempt, outcome.run, [*packed, "another attempt took this job over: results dropped"])
            elif job_id in retry:
                _finish_attempt(attempt, outcome.run, [*packed, "the pack failed before this job was complete: it runs again in a smaller pack"])
                job.status, job.lease_expires_at = JobStatus.PENDING, None
            else:
                kept.append(job_id)
                rows += piece.rows
                _finish_attempt(attempt, outcome.run, packed + outcome.problems)
                job.status, job.finished_at, job.lease_expires_at = JobStatus.DONE, utcnow(), None
        bulk_insert(session, RESULT_MODEL[pack.kind].__table__, rows)
        if pack.kind == "defense":
            tallies.count_defense_jobs(session, kept)
    return len(kept)
