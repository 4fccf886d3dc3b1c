"""Standings computed once per change of the results, shared by every request.

Leaderboards and matrices are read far more often than results land. What costs most (the
per-image outcomes behind the intervals and worst cases, and their bootstrap) is computed
here, once per change, never per request; when only new defense jobs have finished, their
answers alone are read and added to the previous snapshot's outcomes. The cache key is
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
from datetime import datetime
from enum import Enum
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope  # beside entries.Scope, which the cache is keyed by

from arena import job_states
from arena.admin import tournament
from arena.competition import rounds
from arena.competition.entries import Scope
from arena.config import Settings
from arena.data.dataset import pick_dataset
from arena.db import transaction
from arena.models import (
    AttackJob,
    Dataset,
    DefenseJob,
    Entry,
    QueryJob,
    Round,
    Submission,
    SubmissionStatus,
)
from arena.results import progress, query_scoring
from arena.results.leaderboards import Leaderboards
from arena.results.outcomes import ImageOutcomes
from arena.results.scoring import Names, Standings
from arena.web import permissions
from arena.web.compression import Body

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Version:
    dataset_id: int
    finished: tuple
    accepted: tuple[tuple, ...]
    round: tuple


def version(session: Session, dataset: Dataset) -> Version:
    """What the standings depend on: finished jobs (the query track's included), and the
    round's entries as they count (accepted, chosen, baseline, ranked or not)."""
    finished = tuple(
        session.execute(
            select(func.count(job.id), func.max(job.finished_at)).where(job_states.done(job))
        ).one()
        for job in (AttackJob, DefenseJob, QueryJob)
    )
    accepted = tuple(tuple(row) for row in session.execute(
        select(Submission.id, Submission.baseline, Entry.chosen, Round.rank_baselines, Round.epsilons)
        .join(Entry, Entry.submission_id == Submission.id).join(Round, Entry.round_id == Round.id)
        .where(Submission.status == SubmissionStatus.ACCEPTED, Round.dataset_id == dataset.id)
        .order_by(Submission.id)
    ))
    return Version(dataset.id, finished, accepted, tuple(round_facts(session, dataset).items()))


def round_facts(session: Session, dataset: Dataset) -> dict:
    """What the standings pages say about the dataset's round: facts that change only when
    organizers change them (the time left is worked out by the browser, so a page cached
    for hours never shows a stale count)."""
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is None:
        return {}
    window = rounds.window(round_)
    return {"name": round_.name, "opens_at": window.opens_at, "closes_at": window.closes_at,
            "visibility": round_.visibility.value}


@dataclass(frozen=True)
class DoneJobs:
    """The done defense jobs whose answers a snapshot's outcomes hold: how many, the sum of
    their ids and the newest finish time, read in the snapshot's own transaction."""

    count: int
    id_sum: int
    newest: datetime | None

    @classmethod
    def read(cls, session: Session) -> "DoneJobs":
        done = job_states.done(DefenseJob)
        count, id_sum, newest = session.execute(
            select(func.count(DefenseJob.id), func.coalesce(func.sum(DefenseJob.id), 0), func.max(DefenseJob.finished_at))
            .where(done)).one()
        return cls(count, id_sum, newest)


#: Views kept per snapshot: every page and JSON view people ask for, with room to spare.
MAX_VIEWS = 512


@dataclass
class Snapshot:
    """What the leaderboards and matrices show, for one version of the results."""

    dataset: Dataset
    standings: Standings
    outcomes: ImageOutcomes  # per image, kept to be added to when results land
    boards: Leaderboards  # with the intervals and worst cases, computed here, not per request
    completion: dict[int, float]  # by submission id
    seconds_per_100: dict[int, float]  # median, by submission id
    done: DoneJobs | None = None
    round: dict = field(default_factory=dict)  # ``round_facts``
    #: The query track's boards (``query_boards``): budget, epsilons, attacks, defenses; empty: none run.
    query: dict = field(default_factory=dict)
    #: The query track's cells behind them, judged (``query_scoring.judged``), for its matrix.
    query_cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    _views: dict[tuple, Any] = field(default_factory=dict)

    @classmethod
    def compute(cls, session: Session, dataset: Dataset, settings: Settings, scope: Scope,
                previous: "Snapshot | None" = None) -> "Snapshot":
        """The snapshot of the results as ``session`` sees them, among the entries of ``scope``;
        the per-image outcomes are ``previous``'s plus those of the defense jobs finished since,
        when that is all that changed, else read afresh."""
        done = DoneJobs.read(session)
        standings = Standings.compute(session, dataset, scope)
        outcomes = _extended(session, dataset, standings, previous, done) or \
            ImageOutcomes.load(session, dataset, standings.names)
        query_cells = shown_query_cells(session, dataset, standings.names)
        return cls(dataset, standings, outcomes, Leaderboards.compute(standings, outcomes),
                   progress.completion(session, dataset, settings), progress.median_seconds_per_100(session), done,
                   round_facts(session, dataset), query_boards(session, dataset, query_cells, standings.names),
                   query_cells)

    def view(self, key: tuple, make: Callable[[], Any]) -> Any:
        """A view shaped once per snapshot (two threads may both shape it; both get equal ones).
        Past ``MAX_VIEWS`` a new view is shaped for its request and not kept: query values
        (``top_attacks``, ``eps``...) chosen freely by any reader must not grow the memory."""
        if key in self._views:
            return self._views[key]
        made = make()
        if len(self._views) < MAX_VIEWS:
            self._views[key] = made
        return made

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


def shown_query_cells(session: Session, dataset: Dataset, names: Names) -> pd.DataFrame:
    """The round's query-track cells, judged, among the entries the standings show (one per
    team and track, or all): a cell counts when both its attack and its defense are shown.
    Empty when the round has no query results."""
    round_ = rounds.of_dataset(session, dataset.id)
    if round_ is None:
        return pd.DataFrame()
    frame = query_scoring.results_frame(session, round_)
    shown = set(names.frame["submission"])
    frame = frame[frame["attack"].isin(shown) & frame["defense"].isin(shown)]
    return pd.DataFrame() if frame.empty else query_scoring.judged(frame, list(round_.epsilons))


def query_boards(session: Session, dataset: Dataset, cells: pd.DataFrame, names: Names) -> dict:
    """The query track's boards from its ``shown_query_cells``; empty when there are none."""
    if cells.empty:
        return {}
    round_ = rounds.of_dataset(session, dataset.id)
    teams = dict(zip(names.frame["submission"], names.frame["team"]))
    return {"budget": round_.query_budget, "epsilons": list(round_.epsilons),
            **query_scoring.boards(cells, list(round_.epsilons), teams)}


class AfterChanges:
    """The standings are checked again after every change made through this app (a POST,
    PATCH, PUT or DELETE answered below 400), before its answer goes out: organizers hiding
    the leaderboards, closing or publishing a round see it on the next request, pages and
    API alike, and no route has to remember to say so. A change made elsewhere (the CLI) is
    seen within the cache's delay. A recheck costs the next reader one short query."""

    WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.WRITES:
            return await self.app(scope, receive, send)

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                scope["app"].state.standings.recheck()
            await send(message)

        await self.app(scope, receive, answer)


@dataclass(frozen=True)
class Current:
    """The newest snapshot of a dataset, whether the leaderboards are public, the tournament's
    title and its rounds, all read in one check (so a cached page needs no query)."""

    snapshot: Snapshot
    public: bool
    title: str
    rounds: tuple[tuple[str, str, str], ...] = ()  # ``round_list``: the pages' round switcher


def round_list(session: Session) -> tuple[tuple[str, str, str], ...]:
    """Every round as the standings pages' switcher names it: its name, its dataset's name and
    its visibility, in the order the rounds were made."""
    return tuple((r.name, r.dataset.name, r.visibility.value) for r in session.scalars(select(Round).order_by(Round.id)))


class Pick(Enum):
    """A dataset named by a rule rather than by name, as a key of the cache."""

    IN_VIEW = "in view"  # ``permissions.dataset_in_view``: what the pages show when no round is named


#: A key's dataset: a name, None (the newest: the API's default) or a rule.
DatasetKey = str | Pick | None


#: Past this many new defense jobs, reading everything again is about as quick.
MAX_ADDED_JOBS = 5000


def _extended(session: Session, dataset: Dataset, standings: Standings, previous: Snapshot | None,
              done: DoneJobs) -> ImageOutcomes | None:
    """``previous``'s outcomes plus those of the defense jobs finished since, or None when
    more than that changed: another dataset, other submissions accepted, a job forgotten (a
    re-run) or committed with an older finish time than ``previous`` saw (the done jobs'
    count and id sum must have grown by exactly the jobs added), a new epsilon."""
    if previous is None or previous.done is None or previous.done.newest is None \
            or previous.dataset.id != dataset.id or not previous.standings.names.frame.equals(standings.names.frame):
        return None
    added = list(session.scalars(select(DefenseJob.id).where(job_states.done(DefenseJob),
                                                            DefenseJob.finished_at > previous.done.newest)))
    if (previous.done.count + len(added), previous.done.id_sum + sum(added)) != (done.count, done.id_sum) \
            or len(added) > MAX_ADDED_JOBS:
        return None
    if not added:
        return previous.outcomes
    delta = previous.outcomes.of_jobs(session, dataset, added)
    return None if delta is None else previous.outcomes.plus(delta)


def _one_snapshot(session: Session) -> None:
    """Every read of the refresh from one snapshot of the database, so that the version, the
    tallies, the answers and the done jobs agree, and the next refresh adds exactly the jobs
    this one did not see. PostgreSQL's default (read committed) gives each statement its own
    snapshot: the transaction is made REPEATABLE READ. SQLite's driver begins a transaction
    only before a write, so each read would see the latest commit: the transaction is begun
    here (a read transaction holds its snapshot under WAL, and writers go on)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        session.connection().exec_driver_sql("BEGIN")


@dataclass
class _Entry:
    version: Version
    current: Current
    checked: float  # the cache's clock at the last check
    generation: int  # the cache's ``recheck`` count when the check began


class StandingsCache:
    """The newest snapshot per dataset and scope (counting entries, or every entry for
    organizers); one computation at a time, others wait and reuse it.

    The database is asked at most every ``recheck_seconds`` (one short transaction: the
    tournament settings, the dataset, the version), so a burst of requests costs no query
    at all, and a result that lands shows within that delay plus one recompute. ``clock``
    (seconds, only ever increasing) is ``time.monotonic`` but in tests, which move it on by
    hand rather than sleep past the delay."""

    def __init__(self, settings: Settings, recheck_seconds: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._recheck = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[DatasetKey, Scope], _Entry] = {}
        self._generation = 0

    def get(self, dataset_name: DatasetKey, scope: Scope = Scope.COUNTING) -> Current:
        """The snapshot of the named dataset (None: the newest; ``Pick.IN_VIEW``: the one the
        pages show by default) among the entries of ``scope``,
        whether the leaderboards are public and the title; an unknown dataset is a 404. While
        one request refreshes an entry, the
        others are served the entry they have rather than queueing behind it."""
        key = (dataset_name, scope)
        entry = self._entries.get(key)
        if not self._usable(entry):
            with self._lock:
                entry = self._entries.get(key)
                entry = entry if self._usable(entry) else self._refresh(key)
        elif self._clock() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            try:
                entry = self._refresh(key)
            finally:
                self._lock.release()
        return entry.current

    def peek(self, dataset_name: DatasetKey, scope: Scope = Scope.COUNTING) -> Current | None:
        """Like ``get`` but never waits, for the event loop: None when there is no entry yet;
        a stale entry is returned as it is and refreshed in a background thread."""
        key = (dataset_name, scope)
        entry = self._entries.get(key)
        if not self._usable(entry):
            return None
        if self._clock() - entry.checked >= self._recheck and self._lock.acquire(blocking=False):
            threading.Thread(target=self._refresh_then_release, args=(key,), daemon=True).start()
        return entry.current

    def fresh(self, dataset_name: DatasetKey, scope: Scope = Scope.COUNTING) -> Current | None:
        """The entry when it was checked within ``recheck_seconds``, else None, never waiting:
        the pages serve it from the event loop and otherwise call ``get`` in a worker thread,
        so a page asked for after a result lands shows it (the API's ``peek`` may serve the
        entry before the check once)."""
        entry = self._entries.get((dataset_name, scope))
        if not self._usable(entry) or self._clock() - entry.checked >= self._recheck:
            return None
        return entry.current

    def recheck(self) -> None:
        """Check the database before serving any entry again, whatever the delay (``AfterChanges``
        calls it after every change made through this app). An entry whose check began
        before this is not served."""
        self._generation += 1

    def _usable(self, entry: _Entry | None) -> bool:
        return entry is not None and entry.generation == self._generation

    def _refresh_then_release(self, key: tuple[DatasetKey, Scope]) -> None:
        try:
            self._refresh(key)
        except Exception:  # the entry stays as it was; the next request tries again
            logger.exception("refreshing the standings of %r failed", key)
        finally:
            self._lock.release()

    def _refresh(self, key: tuple[DatasetKey, Scope]) -> _Entry:
        """Called with the lock held. A snapshot of the same version kept under another key (the
        newest dataset asked for by name and by default) is shared, not computed twice."""
        dataset_name, scope = key
        generation = self._generation
        with transaction(self._settings) as session:
            _one_snapshot(session)
            dataset = permissions.dataset_in_view(session) if dataset_name is Pick.IN_VIEW \
                else pick_dataset(session, dataset_name)
            current = version(session, dataset)
            entry = self._entries.get(key)
            same = next((other.current.snapshot for (_, other_scope), other in self._entries.items()
                         if other_scope is scope and other.version == current), None)
            snapshot = same or Snapshot.compute(session, dataset, self._settings, scope,
                                                entry.current.snapshot if entry is not None else None)
            entry = _Entry(current, Current(snapshot, permissions.results_public(session, dataset),
                                            tournament.current(session).title, round_list(session)),
                           self._clock(), generation)
            self._entries[key] = entry
            return entry
