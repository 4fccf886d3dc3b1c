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
from arena.execution import planning
from arena.execution.pack_run import Pack
from arena.models import AttackJob, Dataset, DefenseJob, Image, JobAttempt, Submission

#: Runs looked at to learn a submission's time per image: recent ones say most.
RECENT_RUNS = 20


def seconds_per_image(session: Session, submission: Submission) -> float | None:
    """The submission's measured time per image: its recent runs, else its dry run."""
    column = AttackJob.submission_id if submission.kind.is_attack else DefenseJob.submission_id
    job = AttackJob if submission.kind.is_attack else DefenseJob
    link = JobAttempt.attack_job_id if submission.kind.is_attack else JobAttempt.defense_job_id
    ratios = session.scalars(
        select(JobAttempt.seconds / JobAttempt.images)
        .join(job, link == job.id)
        .where(column == submission.id, JobAttempt.images > 0, JobAttempt.seconds.is_not(None))
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


def make_packs(session: Session, settings: Settings, kind: str, job_ids: list[int]) -> list[Pack]:
    """Group runnable jobs into packs, each at least one job and at most ``pack_images`` images."""
    job_class = AttackJob if kind == "attack" else DefenseJob
    jobs = session.scalars(select(job_class).where(job_class.id.in_(job_ids)).order_by(job_class.id)).all()
    sizes = _images_per_batch(session, {j.batch_id for j in jobs})

    def key(job) -> tuple:
        return (job.submission_id, job.epsilon) if kind == "attack" else (job.submission_id,)

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


def plan_packs(
    session: Session,
    settings: Settings,
    dataset: Dataset,
    skip: frozenset[tuple[str, int]] = frozenset(),
    max_attempts: int | None = None,
) -> list[Pack]:
    """Plan what is missing, then pack every runnable job not in ``skip`` (``(kind, job id)``
    pairs already handed out, or failed on the platform in this run)."""
    planning.plan(session, dataset, settings.epsilons)
    packs = []
    for kind, job_class in (("attack", AttackJob), ("defense", DefenseJob)):
        jobs = planning.runnable(session, dataset, job_class, max_attempts=max_attempts)
        runnable = [job for job in jobs if (kind, job) not in skip]
        packs += make_packs(session, settings, kind, runnable) if runnable else []
    return packs
