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
from arena.competition import rounds
from arena.competition.entries import Scope
from arena.config import Settings
from arena.db import transaction
from arena.models import (
    AttackJob,
    Dataset,
    DefenseJob,
    Entry,
    JobStatus,
    Round,
    Submission,
    SubmissionStatus,
    Visibility,
)
from arena.results import progress
from arena.results.scoring import Standings
from arena.web.datasets import pick_dataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    dataset_id: int
    finished: tuple
    accepted: tuple[tuple, ...]


def version(session: Session, dataset: Dataset) -> Version:
    """What the standings depend on: finished jobs, and the round's entries as they count
    (accepted, chosen, baseline, ranked or not)."""
    finished = tuple(
        session.execute(
            select(func.count(job.id), func.max(job.finished_at)).where(job.status == JobStatus.DONE)
        ).one()
        for job in (AttackJob, DefenseJob)
    )
    accepted = tuple(tuple(row) for row in session.execute(
        select(Submission.id, Submission.baseline, Entry.chosen, Round.rank_baselines, Round.epsilons)
        .join(Entry, Entry.submission_id == Submission.id).join(Round, Entry.round_id == Round.id)
        .where(Submission.status == SubmissionStatus.ACCEPTED, Round.dataset_id == dataset.id)
        .order_by(Submission.id)
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
    def compute(cls, session: Session, dataset: Dataset, settings: Settings, scope: Scope) -> "Snapshot":
        return cls(dataset, Standings.compute(session, dataset, scope), progress.completion(session, dataset, settings),
                   progress.median_seconds_per_100(session))

    def view(self, key: tuple, make: Callable[[], Any]) -> Any:
        """A view shaped once per snapshot (two threads may both shape it; both get equal ones)."""
        if key not in self._views:
            self._views[key] = make()
        return self._views[key]

    def cached_json(self, key: tuple) -> bytes | None:
        return self._views.get(("json", *key))

    def json(self, key: tuple, make: Callable[[], Any]) -> bytes:
        """A view already serialised: a 100 x 100 matrix costs more to encode than to look up."""
        return self.view(("json", *key), lambda: json.dumps(make(), separators=(",", ":")).encode())


@dataclass
class _Entry:
    version: Version
    snapshot: Snapshot
    public: bool  # whether the leaderboards are public (tournament and round), checked with the version
    checked: float  # time.monotonic() of the last check


class StandingsCache:
    """The newest snapshot per dataset and scope (counting entries, or every entry for
    organizers); one computation at a time, others wait and reuse it.

    The database is asked at most every ``recheck_seconds`` (one short transaction: the
    tournament settings, the dataset, the version), so a burst of requests costs no query
    at all, and a result that lands shows within that delay plus one recompute."""

    def __init__(self, settings: Settings, recheck_seconds: float = 0.5) -> None:
        self._settings = settings
        self._recheck = recheck_seconds
        self._lock = threading.Lock()
        self._entries: dict[tuple[str | None, Scope], _Entry] = {}

    def get(self, dataset_name: str | None, scope: Scope = Scope.COUNTING) -> tuple[Snapshot, bool]:
        """The snapshot of the named dataset (None: the newest), and whether the leaderboards
        are public; an unknown dataset is a 404. While one request refreshes an entry, the
        others are served the entry they have rather than queueing behind it."""
        key = (dataset_name, scope)
        entry = self._entries.get(key)
        if entry is None:
            with self._lock:
                entry = self._entries.get(key) or self._refresh(key)
        elif time.monotonic() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            try:
                entry = self._refresh(key)
            finally:
                self._lock.release()
        return entry.snapshot, entry.public

    def peek(self, dataset_name: str | None, scope: Scope = Scope.COUNTING) -> tuple[Snapshot, bool] | None:
        """Like ``get`` but never waits, for the event loop: None when there is no entry yet;
        a stale entry is returned as it is and refreshed in a background thread."""
        key = (dataset_name, scope)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            threading.Thread(target=self._refresh_then_release, args=(key,), daemon=True).start()
        return entry.snapshot, entry.public

    def _refresh_then_release(self, key: tuple[str | None, Scope]) -> None:
        try:
            self._refresh(key)
        except Exception:  # the entry stays as it was; the next request tries again
            logger.exception("refreshing the standings of %r failed", key)
        finally:
            self._lock.release()

    def _refresh(self, key: tuple[str | None, Scope]) -> _Entry:
        """Called with the lock held."""
        dataset_name, scope = key
        with transaction(self._settings) as session:
            dataset = pick_dataset(session, dataset_name)
            current = version(session, dataset)
            entry = self._entries.get(key)
            snapshot = entry.snapshot if entry is not None and entry.version == current else \
                Snapshot.compute(session, dataset, self._settings, scope)
            entry = _Entry(current, snapshot, _public(session, dataset), time.monotonic())
            self._entries[key] = entry
            return entry


def _public(session: Session, dataset: Dataset) -> bool:
    """A published round is public; otherwise teams see its leaderboards unless organizers hid
    them all (the tournament's switch) or this round's until it is published."""
    round_ = rounds.of_dataset(session, dataset.id)
    visibility = round_.visibility if round_ is not None else Visibility.LIVE
    if visibility is Visibility.PUBLISHED:
        return True
    return tournament.current(session).leaderboards_public and visibility is Visibility.LIVE
