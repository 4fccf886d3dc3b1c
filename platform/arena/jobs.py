"""Running a pack of planned jobs in one container and recording what came of each job.

Every executor, in-process or on a worker, calls ``run_pack``: load the jobs' inputs,
run the container once over all of them with no database session open (runs take
minutes), then store each job's results in one transaction. A pack is jobs of one
submission (and one epsilon, for attacks); a pack of one job is the plain case.

What a failed pack keeps: when the container crashes or times out, each job whose images
all got an output (attacks) or an answer (defenses) is kept; the others are split in two
and run again, so a bad batch ends up alone and only its own results carry the failure.
A platform failure (no engine, missing image) marks the jobs ``error``: planned again.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.attack_run import AttackOutcome, CleanInput, execute_attack
from arena.config import Settings
from arena.db import transaction
from arena.defense_run import DefenseInput, DefenseOutcome, execute_defense
from arena.metadata import Metadata, SubmissionCode
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
from arena.sandbox import RunResult, SandboxError


@dataclass(frozen=True)
class Pack:
    """Jobs of one kind and one submission (and epsilon) to run in one container."""

    kind: str  # "attack" or "defense"
    job_ids: tuple[int, ...]

    @property
    def job_class(self) -> type[AttackJob] | type[DefenseJob]:
        return AttackJob if self.kind == "attack" else DefenseJob

    def halves(self) -> list["Pack"]:
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
    """One job's part of a pack's outcome: the rows to store and whether they are complete."""

    rows: list
    complete: bool


def submission_code(settings: Settings, submission: Submission) -> SubmissionCode:
    return SubmissionCode(settings.submissions_dir / submission.sha256, Metadata.model_validate(submission.meta))


def _attempt_column(job_class: type) -> str:
    return "attack_job_id" if job_class is AttackJob else "defense_job_id"


def _start(settings: Settings, pack: Pack, images: int) -> dict[int, int]:
    """Mark the jobs running and open an attempt for each; return job id -> attempt id."""
    column = _attempt_column(pack.job_class)
    attempts = {}
    with transaction(settings) as session:
        for job_id in pack.job_ids:
            session.get(pack.job_class, job_id).status = JobStatus.RUNNING
            previous = session.scalars(select(JobAttempt.id).where(getattr(JobAttempt, column) == job_id)).all()
            attempt = JobAttempt(number=len(previous) + 1, images=images, pack_jobs=len(pack.job_ids), **{column: job_id})
            session.add(attempt)
            session.flush()
            attempts[job_id] = attempt.id
    return attempts


def _finish_attempt(attempt: JobAttempt, run: RunResult, problems: list[str]) -> None:
    attempt.ended_at = utcnow()
    attempt.seconds = run.seconds
    attempt.exit_code = run.exit_code
    attempt.timed_out = run.timed_out
    attempt.killed_reason = run.killed_reason
    attempt.log_excerpt = "".join(f"[arena] {p}\n" for p in problems) + run.log_tail


def _platform_failed(settings: Settings, pack: Pack, attempts: dict[int, int], error: Exception) -> None:
    with transaction(settings) as session:
        for job_id, attempt_id in attempts.items():
            session.get(pack.job_class, job_id).status = JobStatus.ERROR
            attempt = session.get(JobAttempt, attempt_id)
            attempt.ended_at, attempt.error = utcnow(), str(error)


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
            piece.rows.append(AdversarialImage(attack_job_id=job_of[result.image_id], **asdict(result)))
            piece.complete &= not result.missing
        return shares

    return (lambda: execute_attack(settings, code, inputs, jobs[0].epsilon)), len(inputs), share


def _defense_inputs(session: Session, job: DefenseJob) -> list[tuple[int, str, int | None]]:
    """(image id, sha256 to show, adversarial image id) for each image the job covers."""
    if job.attack_job_id is None:
        images = session.scalars(select(Image).where(Image.batch_id == job.batch_id)).all()
        return [(i.id, i.sha256, None) for i in images]
    adversarial = session.scalars(select(AdversarialImage).where(AdversarialImage.attack_job_id == job.attack_job_id)).all()
    return [(a.image_id, a.sha256, a.id) for a in adversarial]


def _load_defense_pack(settings: Settings, session: Session, jobs: list[DefenseJob]) -> Loaded:
    code = submission_code(settings, jobs[0].submission)
    defense_id = jobs[0].submission_id
    inputs, origin = [], {}  # origin: input key -> (job id, image id, adversarial image id)
    for job in jobs:
        for image_id, sha256, adversarial_id in _defense_inputs(session, job):
            key = len(inputs)
            inputs.append(DefenseInput(key, sha256))
            origin[key] = (job.id, image_id, adversarial_id)

    def share(outcome: DefenseOutcome) -> dict[int, JobShare]:
        shares = {job.id: JobShare([], True) for job in jobs}
        for key, answer in outcome.answers.items():
            job_id, image_id, adversarial_id = origin[key]
            shares[job_id].rows.append(
                Classification(defense_job_id=job_id, defense_id=defense_id, image_id=image_id,
                               adversarial_image_id=adversarial_id, label=answer.label, problem=answer.problem)
            )
            shares[job_id].complete &= answer.problem is not ClassificationProblem.MISSING
        return shares

    return (lambda: execute_defense(settings, code, inputs)), len(inputs), share


# --- running a pack ---------------------------------------------------------------------


def run_pack(settings: Settings, pack: Pack) -> PackResult:
    loader = _load_attack_pack if pack.kind == "attack" else _load_defense_pack
    with transaction(settings) as session:
        jobs = [session.get(pack.job_class, job_id) for job_id in pack.job_ids]
        execute, images, share = loader(settings, session, jobs)
    attempts = _start(settings, pack, images)
    try:
        outcome = execute()
    except SandboxError as exc:
        _platform_failed(settings, pack, attempts, exc)
        return PackResult(platform_error=f"{pack.kind} jobs {list(pack.job_ids)}: {exc}")
    shares = share(outcome)
    retry = [] if outcome.run.succeeded or len(pack.job_ids) == 1 else [j for j in pack.job_ids if not shares[j].complete]
    _store(settings, pack, attempts, outcome, shares, retry)
    again = Pack(pack.kind, tuple(retry)).halves() if len(retry) > 1 else [Pack(pack.kind, tuple(retry))] if retry else []
    return PackResult(finished=len(pack.job_ids) - len(retry), again=again)


def _store(settings: Settings, pack: Pack, attempts: dict[int, int], outcome, shares: dict[int, JobShare], retry: list[int]) -> None:
    """Every kept job's rows, attempt and status in one transaction."""
    packed = [f"ran in a pack of {len(pack.job_ids)} jobs"] if len(pack.job_ids) > 1 else []
    with transaction(settings) as session:
        for job_id, piece in shares.items():
            job = session.get(pack.job_class, job_id)
            attempt = session.get(JobAttempt, attempts[job_id])
            if job_id in retry:  # stays running: the caller runs it again at once, in a smaller pack
                _finish_attempt(attempt, outcome.run, [*packed, "the pack failed before this job was complete: it runs again in a smaller pack"])
                continue
            session.add_all(piece.rows)
            _finish_attempt(attempt, outcome.run, packed + outcome.problems)
            job.status, job.finished_at = JobStatus.DONE, utcnow()
