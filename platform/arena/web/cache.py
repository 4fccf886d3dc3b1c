"""Standings computed once per change of the results, shared by every request.

Leaderboards and matrices are read far more often than results land. The cache key is
cheap to read (the number of finished jobs, the newest finish time, which submissions are
accepted), so a request after a result lands sees it, and the others reuse the same
``Standings`` instead of recomputing them per request.
"""

import threading
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.models import (
    AttackJob,
    Dataset,
    DefenseJob,
    JobStatus,
    Submission,
    SubmissionStatus,
)
from arena.scoring import Standings


@dataclass(frozen=True)
class Version:
    dataset_id: int
    finished: tuple
    accepted: tuple[int, ...]


def version(session: Session, dataset: Dataset) -> Version:
    finished = tuple(
        session.execute(
            select(func.count(job.id), func.max(job.finished_at)).where(job.status == JobStatus.DONE)
        ).one()
        for job in (AttackJob, DefenseJob)
    )
    accepted = tuple(session.scalars(
        select(Submission.id).where(Submission.status == SubmissionStatus.ACCEPTED).order_by(Submission.id)
    ))
    return Version(dataset.id, finished, accepted)


class StandingsCache:
    """The newest Standings per dataset; one computation at a time, others wait and reuse it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[Version, Standings]] = {}

    def get(self, session: Session, dataset: Dataset) -> Standings:
        key = version(session, dataset)
        with self._lock:
            entry = self._entries.get(dataset.id)
            if entry is None or entry[0] != key:
                entry = (key, Standings.compute(session, dataset))
                self._entries[dataset.id] = entry
            return entry[1]
