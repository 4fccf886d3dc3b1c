"""Packing: how many batches go into one container run.

Container start-up (about half a second here) and model loading (seconds) are paid per
run; with one run per 100-image batch a defense in a large tournament pays them tens of
thousands of times. Jobs of one submission (and one epsilon, for attacks) are therefore
packed until their expected time reaches ``pack_seconds``, the time per image learnt from
the submission's earlier runs (or its dry run). The time limit of a run scales with its
image count, so packing never tightens a submission's budget.
"""

from itertools import groupby

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.execution import leases, planning
from arena.execution.pack_run import Pack
from arena.models import Dataset, Image, JobAttempt, JobKind, Submission

#: Runs looked at to learn a submission's time per image: recent ones say most.
RECENT_RUNS = 20


def seconds_per_image(session: Session, submission: Submission) -> float | None:
    """The submission's measured time per image: its recent runs, else its dry run."""
    kind = JobKind.of(submission.kind)
    ratios = session.scalars(
        select(JobAttempt.seconds / JobAttempt.images)
        .join(kind.job_class, kind.attempt_column == kind.job_class.id)
        .where(kind.job_class.submission_id == submission.id, JobAttempt.images > 0, JobAttempt.seconds.is_not(None))
        .order_by(JobAttempt.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    if ratios:
        return sum(ratios) / len(ratios)
    report = submission.validation_report or {}
    if report.get("images"):
        return report["seconds"] / report["images"]
    return None


def pack_images(session: Session, settings: Settings, submission: Submission) -> int:
    """Images to put in one run of this submission."""
    measured = seconds_per_image(session, submission)
    if settings.pack_seconds <= 0 or measured is None:
        return 1  # one batch: nothing known yet, or packing switched off
    return max(1, min(settings.max_pack_images, int(settings.pack_seconds / max(measured, 1e-3))))


def _images_per_batch(session: Session, batch_ids: set[int]) -> dict[int, int]:
    query = select(Image.batch_id, func.count(Image.id)).where(Image.batch_id.in_(batch_ids)).group_by(Image.batch_id)
    return dict(session.execute(query).all())


def make_packs(session: Session, settings: Settings, kind: JobKind, job_ids: list[int]) -> list[Pack]:
    """Group runnable jobs into packs, each at least one job and at most ``pack_images`` images."""
    job_class = kind.job_class
    jobs = session.scalars(select(job_class).where(job_class.id.in_(job_ids)).order_by(job_class.id)).all()
    sizes = _images_per_batch(session, {j.batch_id for j in jobs})

    def key(job) -> tuple:
        return (job.submission_id, job.epsilon) if kind is JobKind.ATTACK else (job.submission_id,)

    packs = []
    for _, group in groupby(sorted(jobs, key=lambda j: (key(j), j.id)), key=key):
        group = list(group)
        budget = pack_images(session, settings, group[0].submission)
        current: list[int] = []
        filled = 0
        for job in group:
            if current and filled + sizes.get(job.batch_id, 0) > budget:
                packs.append(Pack(kind, tuple(current)))
                current, filled = [], 0
            current.append(job.id)
            filled += sizes.get(job.batch_id, 0)
        packs.append(Pack(kind, tuple(current)))
    return packs


def next_packs(
    session: Session, settings: Settings, dataset: Dataset, skip: frozenset[tuple[JobKind, int]] = frozenset()
) -> list[Pack]:
    """One turn of every executor: reap expired leases, plan what is missing, then pack every
    runnable job not in ``skip`` (``(kind, job id)`` pairs this run already handed out, or
    saw fail on the platform). A job that failed on the platform ``settings.max_attempts``
    times is left in error."""
    leases.reap(session)
    planning.plan(session, dataset, settings.epsilons)
    packs = []
    for kind in JobKind:
        jobs = planning.runnable(session, dataset, kind, max_attempts=settings.max_attempts)
        runnable = [job for job in jobs if (kind, job) not in skip]
        packs += make_packs(session, settings, kind, runnable) if runnable else []
    return packs
