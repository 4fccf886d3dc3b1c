"""Standings computed once per change of the results, shared by every request.

Leaderboards and matrices are read far more often than results land. The cache key is
cheap to read (the number of finished jobs, the newest finish time, which submissions are
accepted), so a request after a result lands sees it, and the others reuse the same
snapshot (standings, completion, run times, and every view already shaped from them)
instead of recomputing per request.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.admin import tournament
from arena.config import Settings
from arena.db import transaction
from arena.models import (
    AttackJob,
    Dataset,
    DefenseJob,
    JobStatus,
    Submission,
    SubmissionStatus,
)
from arena.results import progress
from arena.results.scoring import Standings
from arena.web.compression import Body
from arena.web.datasets import pick_dataset

logger = logging.getLogger(__name__)


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


@dataclass
class Snapshot:
    """What the leaderboards and matrices show, for one version of the results."""

    dataset: Dataset
    standings: Standings
    completion: dict[int, float]  # by submission id
    seconds_per_100: dict[int, float]  # median, by submission id
    _views: dict[tuple, Any] = field(default_factory=dict)

    @classmethod
    def compute(cls, session: Session, dataset: Dataset, settings: Settings) -> "Snapshot":
        return cls(dataset, Standings.compute(session, dataset), progress.completion(session, dataset, settings),
                   progress.median_seconds_per_100(session))

    def view(self, key: tuple, make: Callable[[], Any]) -> Any:
        """A view shaped once per snapshot (two threads may both shape it; both get equal ones)."""
        if key not in self._views:
            self._views[key] = make()
        return self._views[key]

    def cached(self, key: tuple) -> Any:
        """The view if it was shaped already, else None: lets a request skip the worker thread."""
        return self._views.get(key)

    def cached_json(self, key: tuple) -> Body | None:
        return self.cached(("json", *key))

    def json(self, key: tuple, make: Callable[[], Any]) -> Body:
        """A view already serialised and compressed: a 100 x 100 matrix costs more to encode
        than to look up."""
        return self.view(("json", *key), lambda: Body.of(json.dumps(make(), separators=(",", ":")).encode(),
                                                          "application/json"))


@dataclass(frozen=True)
class Current:
    """The newest snapshot of a dataset, whether the leaderboards are public, and the
    tournament's title, all read in one check (so a cached page needs no query)."""

    snapshot: Snapshot
    public: bool
    title: str


@dataclass
class _Entry:
    version: Version
    current: Current
    checked: float  # time.monotonic() of the last check


class StandingsCache:
    """The newest snapshot per dataset; one computation at a time, others wait and reuse it.

    The database is asked at most every ``recheck_seconds`` (one short transaction: the
    tournament settings, the dataset, the version), so a burst of requests costs no query
    at all, and a result that lands shows within that delay plus one recompute."""

    def __init__(self, settings: Settings, recheck_seconds: float = 0.5) -> None:
        self._settings = settings
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._entries: dict[str | None, _Entry] = {}

    def get(self, dataset_name: str | None) -> Current:
        """The snapshot of the named dataset (None: the newest), whether the leaderboards are
        public and the title; an unknown dataset is a 404. While one request refreshes an entry, the
        others are served the entry they have rather than queueing behind it."""
        entry = self._entries.get(dataset_name)
        if entry is None:
            with self._lock:
                entry = self._entries.get(dataset_name) or self._refresh(dataset_name)
        elif time.monotonic() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            try:
                entry = self._refresh(dataset_name)
            finally:
                self._lock.release()
        return entry.current

    def peek(self, dataset_name: str | None) -> Current | None:
        """Like ``get`` but never waits, for the event loop: None when there is no entry yet;
        a stale entry is returned as it is and refreshed in a background thread."""
        entry = self._entries.get(dataset_name)
        if entry is None:
            return None
        if time.monotonic() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            threading.Thread(target=self._refresh_then_release, args=(dataset_name,), daemon=True).start()
        return entry.current

    def _refresh_then_release(self, dataset_name: str | None) -> None:
        try:
            self._refresh(dataset_name)
        except Exception:  # the entry stays as it was; the next request tries again
            logger.exception("refreshing the standings of %r failed", dataset_name)
        finally:
            self._lock.release()

    def _refresh(self, dataset_name: str | None) -> _Entry:
        """Called with the lock held."""
        with transaction(self._settings) as session:
            dataset = pick_dataset(session, dataset_name)
            key = version(session, dataset)
            entry = self._entries.get(dataset_name)
            snapshot = entry.current.snapshot if entry is not None and entry.version == key else \
                Snapshot.compute(session, dataset, self._settings)
            settings = tournament.current(session)
            entry = _Entry(key, Current(snapshot, settings.leaderboards_public, settings.title), time.monotonic())
            self._entries[dataset_name] = entry
            return entry
