"""How far a tournament, or one submission, has got: job counts from the database.

The database is the single source of truth for progress whoever runs the jobs (the
in-process executor, Celery workers, another terminal), so the web pages and the CLI
ask it rather than the process that started the run.
"""

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena import job_states
from arena.competition import entries, rounds
from arena.config import Settings
from arena.models import (
    Batch,
    Dataset,
    JobAttempt,
    JobKind,
    JobStatus,
    QueryJob,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)


@dataclass
class JobCounts:
    """Jobs by status, and how many the whole grid will have once every attack has run."""

    by_status: Counter = field(default_factory=Counter)
    expected: int = 0

    @property
    def done(self) -> int:
        return self.by_status[JobStatus.DONE]

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.expected) if self.expected else 1.0

    def as_dict(self) -> dict:
        return {
            "done": self.done,
            "expected": self.expected,
            "fraction": round(self.fraction, 4),
            **{str(status): self.by_status[status] for status in JobStatus},
        }


def job_statuses(session: Session, dataset: Dataset, kind: JobKind, submission_id: int | None = None) -> Counter:
    job_class = kind.job_class
    query = (
        select(job_class.status, func.count(job_class.id))
        .join(Batch, job_class.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id)
        .group_by(job_class.status)
    )
    if submission_id is not None:
        query = query.where(job_class.submission_id == submission_id)
    return Counter({JobStatus(status): count for status, count in session.execute(query)})


def _accepted(session: Session, dataset: Dataset, *kinds: SubmissionKind) -> int:
    """Accepted submissions of these kinds entered in the dataset's round."""
    entered = entries.accepted(session, dataset.id)
    query = select(func.count(Submission.id)).where(Submission.id.in_(entered), Submission.kind.in_(kinds))
    return session.scalar(query)


def _grid(session: Session, dataset: Dataset, settings: Settings) -> tuple[int, int]:
    """Jobs one attack and one defense have in the full grid, at the round's epsilons."""
    batches = session.scalar(select(func.count(Batch.id)).where(Batch.dataset_id == dataset.id))
    attacks = _accepted(session, dataset, SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)
    round_ = rounds.of_dataset(session, dataset.id)
    per_attack = batches * round_.eps_schedule.per_batch(round_.epsilons) if round_ is not None else 0
    return per_attack, batches + attacks * per_attack


def _batch_jobs(kind: SubmissionKind, per_attack: int, per_defense: int) -> int:
    """The batch-track jobs one submission of ``kind`` has: none for a query attack, whose
    work is the query track's (``execution.query_jobs``)."""
    if kind.is_query_attack:
        return 0
    return per_attack if kind.is_attack else per_defense


def tournament_progress(session: Session, dataset: Dataset, settings: Settings) -> dict[str, JobCounts]:
    per_attack, per_defense = _grid(session, dataset, settings)
    attacks = _accepted(session, dataset, SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK)
    defenses = _accepted(session, dataset, SubmissionKind.DEFENSE)
    return {
        "attack_jobs": JobCounts(job_statuses(session, dataset, JobKind.ATTACK), attacks * per_attack),
        "defense_jobs": JobCounts(job_statuses(session, dataset, JobKind.DEFENSE), defenses * per_defense),
    }


def submission_progress(session: Session, dataset: Dataset, submission: Submission, settings: Settings) -> JobCounts:
    if submission.kind.is_query_attack:
        return _query_attack_progress(session, dataset, submission)
    per_attack, per_defense = _grid(session, dataset, settings)
    expected = _batch_jobs(submission.kind, per_attack, per_defense)
    if submission.status is not SubmissionStatus.ACCEPTED:
        expected = 0
    return JobCounts(job_statuses(session, dataset, JobKind.of(submission.kind), submission.id), expected)


def query_job_statuses(session: Session, dataset: Dataset, attack_id: int | None = None) -> Counter:
    """The dataset's query jobs (of one query attack, when given) by status, as
    ``job_statuses`` counts the batch tracks'."""
    query = (select(QueryJob.status, func.count(QueryJob.id)).join(Batch, QueryJob.batch_id == Batch.id)
             .where(Batch.dataset_id == dataset.id).group_by(QueryJob.status))
    if attack_id is not None:
        query = query.where(QueryJob.attack_id == attack_id)
    return Counter({JobStatus(status): count for status, count in session.execute(query)})


def _query_attack_progress(session: Session, dataset: Dataset, submission: Submission) -> JobCounts:
    """A query attack's work is its query jobs, one per served defense and batch it is paired
    with; which pairs run is the round's choice (``execution.query_pairs``), so what is
    expected is what has been planned: none before the first runner's turn plans them."""
    by_status = query_job_statuses(session, dataset, submission.id)
    return JobCounts(by_status, sum(by_status.values()) if submission.status is SubmissionStatus.ACCEPTED else 0)


def completion(session: Session, dataset: Dataset, settings: Settings) -> dict[int, float]:
    """Each entered submission's finished share of its jobs, by submission id (two grouped
    queries, whatever the number of submissions: the leaderboards show it on every row)."""
    per_attack, per_defense = _grid(session, dataset, settings)
    done: dict[int, int] = {}
    for job_class in (kind.job_class for kind in JobKind):
        done.update(session.execute(
            select(job_class.submission_id, func.count(job_class.id))
            .join(Batch, job_class.batch_id == Batch.id)
            .where(Batch.dataset_id == dataset.id, job_states.done(job_class))
            .group_by(job_class.submission_id)
        ).all())
    entered = entries.accepted(session, dataset.id)
    accepted = session.execute(select(Submission.id, Submission.kind).where(Submission.id.in_(entered)))
    return {
        submission_id: JobCounts(Counter({JobStatus.DONE: done.get(submission_id, 0)}),
                                 _batch_jobs(kind, per_attack, per_defense)).fraction
        for submission_id, kind in accepted
    }


def median_seconds_per_100(session: Session) -> dict[int, float]:
    """Each submission's median container time per 100 images, the unit of the 2017 time limit."""
    rows: list[tuple] = []
    for kind in JobKind:
        query = (
            select(kind.job_class.submission_id, JobAttempt.seconds, JobAttempt.images)
            .join(kind.job_class, kind.attempt_column == kind.job_class.id)
            .where(JobAttempt.images > 0, JobAttempt.seconds.is_not(None))
        )
        rows += (tuple(row) for row in session.connection().execute(query))  # Core: 40k attempts at 100 x 100
    frame = pd.DataFrame.from_records(rows, columns=["submission_id", "seconds", "images"])
    per_100 = 100 * frame["seconds"] / frame["images"]
    return {int(k): float(v) for k, v in per_100.groupby(frame["submission_id"]).median().items()}
