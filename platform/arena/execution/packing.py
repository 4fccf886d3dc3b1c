"""Packing: which batches share one container run, fixed per submission.

Container start-up (about half a second here) and model loading (seconds) are paid per
run; with one run per 100-image batch a defense in a large tournament pays them tens of
thousands of times. Jobs of one submission are therefore packed: ``pack_images``, chosen
once from the submission's dry run (its time per image, up to ``pack_seconds`` of work)
and stored with it, says how many images go in one run. A pack is an aligned group of
consecutive batches (batch index // batches per pack) of one source: one epsilon for an
attack; one attack and epsilon, or the clean images, for a defense. Batches per pack are a
power of two, and a defense over an attack's output takes at most the attack's number:
so each defense pack lies inside one attack pack, whose jobs are all stored in one
transaction, and its jobs are always planned together, never as the timing allows.

Which images run together is thus a property of the submission and the dataset, never of
the timing of a particular run: a submission whose output for an image depends on the
other images of its run (one random stream over its inputs, a statistic over the run)
gives the same results on a re-run and on any worker, as the 2017 evaluation's one batch
per container did. The time limit of a run scales with its image count, so packing never
tightens a submission's budget.
"""

from collections import defaultdict
from functools import cache

from sqlalchemy import ColumnElement, Integer, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from arena import job_states
from arena.competition import rounds
from arena.config import Settings
from arena.execution import planning
from arena.execution.pack_run import Pack
from arena.models import (
    AttackJob,
    Batch,
    Dataset,
    DefenseJob,
    Image,
    JobKind,
    Submission,
)

#: Job ids per query: under the bound parameters a statement may carry (SQLite's and psycopg's).
CHUNK = 10_000


def pack_images(settings: Settings, report: dict | None) -> int:
    """Images per container run for a submission whose dry run gave ``report``."""
    if settings.pack_seconds <= 0 or not report or not report.get("images"):
        return 1  # one batch per run: nothing measured, or packing switched off
    per_image = max(report["seconds"] / report["images"], 1e-3)
    return max(1, min(settings.max_pack_images, int(settings.pack_seconds / per_image)))


def _pack_images(settings: Settings, submission: Submission) -> int:
    """The stored choice; made (and stored) now for a submission taken in before it existed."""
    if submission.pack_images is None:
        submission.pack_images = pack_images(settings, submission.validation_report)
    return submission.pack_images


def _batch_images(session: Session, dataset_ids: set[int]) -> dict[int, int]:
    """The images of a full batch, per dataset (its largest batch: only the last may be short)."""
    sizes = (
        select(Batch.dataset_id, func.count(Image.id).label("images"))
        .join(Image, Image.batch_id == Batch.id)
        .where(Batch.dataset_id.in_(dataset_ids))
        .group_by(Batch.id)
        .subquery()
    )
    return dict(session.execute(select(sizes.c.dataset_id, func.max(sizes.c.images)).group_by(sizes.c.dataset_id)).all())


def _batches_per_pack(images: int, batch_images: int) -> int:
    """The largest power of two of full batches within ``images`` (at least one)."""
    batches = max(1, images // max(1, batch_images))
    return 1 << (batches.bit_length() - 1)


def _placed(session: Session, kind: JobKind, job_ids: list[int]) -> list[tuple]:
    """(job id, submission id, source, batch index, dataset id) per job; the source is
    (None, epsilon) for an attack job, (attack, epsilon) or (None, None) for a defense job.

    A 2017 final's first turn packs millions of jobs: past the bound parameters one
    statement may carry (65,535 through psycopg), and converting one parameter per id took
    most of the turn (bench/final2017.py). PostgreSQL gets the ids as one array; SQLite
    ``CHUNK`` at a time."""
    job_class = kind.job_class
    if session.get_bind().dialect.name == "postgresql":
        return _placed_where(session, kind, job_class.id == any_(bindparam("ids", job_ids, type_=ARRAY(Integer))))
    return [row for start in range(0, len(job_ids), CHUNK)
            for row in _placed_where(session, kind, job_class.id.in_(job_ids[start:start + CHUNK]))]


def _placed_where(session: Session, kind: JobKind, chosen: ColumnElement[bool]) -> list[tuple]:
    if kind is JobKind.ATTACK:
        query = (
            select(AttackJob.id, AttackJob.submission_id, AttackJob.epsilon, Batch.index, Batch.dataset_id)
            .join(Batch, AttackJob.batch_id == Batch.id)
            .where(chosen)
        )
        return [(job, submission, (None, eps), index, dataset)
                for job, submission, eps, index, dataset in session.execute(query)]
    source = aliased(AttackJob)
    query = (
        select(DefenseJob.id, DefenseJob.submission_id, source.submission_id, source.epsilon, Batch.index, Batch.dataset_id)
        .join(Batch, DefenseJob.batch_id == Batch.id)
        .outerjoin(source, DefenseJob.attack_job_id == source.id)
        .where(chosen)
    )
    return [(job, submission, (attack, eps), index, dataset)
            for job, submission, attack, eps, index, dataset in session.execute(query)]


def make_packs(session: Session, settings: Settings, kind: JobKind, job_ids: list[int]) -> list[Pack]:
    """Group runnable jobs into packs: per submission, source and aligned group of batches."""
    placed = _placed(session, kind, job_ids)
    involved = {p[1] for p in placed} | {p[2][0] for p in placed if p[2][0] is not None}
    submissions = {s.id: s for s in session.scalars(select(Submission).where(Submission.id.in_(involved)))}
    batch_images = _batch_images(session, {p[4] for p in placed})

    @cache  # asked twice per job: once per submission and dataset is enough
    def per_pack(submission_id: int, dataset_id: int) -> int:
        return _batches_per_pack(_pack_images(settings, submissions[submission_id]), batch_images.get(dataset_id, 1))

    groups: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    for job, submission, (attack, eps), index, dataset in placed:
        batches = per_pack(submission, dataset)
        if attack is not None:  # inside the attack's own pack
            batches = min(batches, per_pack(attack, dataset))
        groups[(submission, attack or 0, eps or 0, dataset, index // batches)].append((index, job))
    return [Pack(kind, tuple(job for _, job in sorted(members))) for _, members in sorted(groups.items())]


def next_packs(
    session: Session, settings: Settings, dataset: Dataset, skip: frozenset[tuple[JobKind, int]] = frozenset()
) -> list[Pack]:
    """One turn of every executor: reap expired leases, plan what is missing, then pack every
    runnable job not in ``skip`` (``(kind, job id)`` pairs this run already handed out, or
    saw fail on the platform). A job that failed on the platform ``settings.max_attempts``
    times is left in error."""
    job_states.reap(session)
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is not None:  # a dataset no round uses has no entries, so nothing to plan
        planning.plan(session, dataset, round_.epsilons, round_.eps_schedule)
    packs = []
    for kind in JobKind:
        jobs = planning.runnable(session, dataset, kind, max_attempts=settings.max_attempts)
        runnable = [job for job in jobs if (kind, job) not in skip]
        packs += make_packs(session, settings, kind, runnable) if runnable else []
    return packs
