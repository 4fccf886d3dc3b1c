"""Running one planned job and recording what came of it.

These are the functions every executor calls, in-process or on a worker: load the
job's inputs, run the container with no database session open (runs take minutes),
then store all results of the job in one transaction. A platform failure (no engine,
missing image) marks the job ``error`` so that it is planned again; a submission's
own failure (crash, time-out, bad outputs) is a result like any other.
"""

from collections.abc import Callable
from dataclasses import asdict
from functools import partial
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
    DefenseJob,
    Image,
    JobAttempt,
    JobStatus,
    Submission,
    utcnow,
)
from arena.sandbox import RunResult, SandboxError


def submission_code(settings: Settings, submission: Submission) -> SubmissionCode:
    return SubmissionCode(settings.submissions_dir / submission.sha256, Metadata.model_validate(submission.meta))


def _finish_attempt(attempt: JobAttempt, run: RunResult, problems: list[str]) -> None:
    attempt.ended_at = utcnow()
    attempt.seconds = run.seconds
    attempt.exit_code = run.exit_code
    attempt.timed_out = run.timed_out
    attempt.killed_reason = run.killed_reason
    notes = "".join(f"[arena] {p}\n" for p in problems)
    attempt.log_excerpt = notes + run.log_tail


def _start(settings: Settings, job_class: type[AttackJob] | type[DefenseJob], job_id: int) -> int:
    """Mark the job running and open an attempt; return the attempt's id."""
    with transaction(settings) as session:
        job = session.get(job_class, job_id)
        job.status = JobStatus.RUNNING
        number = 1 + len(session.scalars(select(JobAttempt.id).where(_attempt_of(job_class, job_id))).all())
        attempt = JobAttempt(number=number, **{_attempt_column(job_class): job_id})
        session.add(attempt)
        session.flush()
        return attempt.id


def _attempt_column(job_class: type) -> str:
    return "attack_job_id" if job_class is AttackJob else "defense_job_id"


def _attempt_of(job_class: type, job_id: int):
    return getattr(JobAttempt, _attempt_column(job_class)) == job_id


def _platform_failed(settings: Settings, job_class: type, job_id: int, attempt_id: int, error: Exception) -> None:
    with transaction(settings) as session:
        session.get(job_class, job_id).status = JobStatus.ERROR
        attempt = session.get(JobAttempt, attempt_id)
        attempt.ended_at = utcnow()
        attempt.error = str(error)


Prepared = tuple[Callable[[], Any], Callable[[Any], list]]


def _run_job(settings: Settings, job_class: type, job_id: int, prepare: Callable[[Session, Any], Prepared]) -> Any:
    """Load (``prepare`` returns the run and how to turn its outcome into rows), run with no
    session open, then store rows, attempt and status together. None on a platform error."""
    with transaction(settings) as session:
        execute, rows = prepare(session, session.get(job_class, job_id))
    attempt_id = _start(settings, job_class, job_id)
    try:
        outcome = execute()
    except SandboxError as exc:
        _platform_failed(settings, job_class, job_id, attempt_id, exc)
        return None
    with transaction(settings) as session:
        session.add_all(rows(outcome))
        _finish_attempt(session.get(JobAttempt, attempt_id), outcome.run, outcome.problems)
        job = session.get(job_class, job_id)
        job.status, job.finished_at = JobStatus.DONE, utcnow()
    return outcome


def run_attack_job(settings: Settings, job_id: int) -> AttackOutcome | None:
    def prepare(session: Session, job: AttackJob) -> Prepared:
        code = submission_code(settings, job.submission)
        inputs = [CleanInput(i.id, i.sha256, i.target_class) for i in job.batch.images]
        execute = partial(execute_attack, settings, code, inputs, job.epsilon)
        return execute, lambda outcome: [AdversarialImage(attack_job_id=job_id, **asdict(r)) for r in outcome.results]

    return _run_job(settings, AttackJob, job_id, prepare)


def _defense_inputs(session: Session, job: DefenseJob) -> tuple[list[DefenseInput], dict[int, tuple[int, int | None]]]:
    """What to show the defense, and for each input key its (image id, adversarial image id)."""
    if job.attack_job_id is None:
        images = session.scalars(select(Image).where(Image.batch_id == job.batch_id)).all()
        return [DefenseInput(i.id, i.sha256) for i in images], {i.id: (i.id, None) for i in images}
    adversarial = session.scalars(
        select(AdversarialImage).where(AdversarialImage.attack_job_id == job.attack_job_id)
    ).all()
    return [DefenseInput(a.id, a.sha256) for a in adversarial], {a.id: (a.image_id, a.id) for a in adversarial}


def run_defense_job(settings: Settings, job_id: int) -> DefenseOutcome | None:
    def prepare(session: Session, job: DefenseJob) -> Prepared:
        code = submission_code(settings, job.submission)
        inputs, keys = _defense_inputs(session, job)
        defense_id = job.submission_id

        def rows(outcome: DefenseOutcome) -> list[Classification]:
            return [
                Classification(
                    defense_job_id=job_id,
                    defense_id=defense_id,
                    image_id=keys[key][0],
                    adversarial_image_id=keys[key][1],
                    label=answer.label,
                    problem=answer.problem,
                )
                for key, answer in outcome.answers.items()
            ]

        return partial(execute_defense, settings, code, inputs), rows

    return _run_job(settings, DefenseJob, job_id, prepare)
