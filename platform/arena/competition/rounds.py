"""Rounds: the stages of a competition (development rounds, then a final on a hidden set).

A round owns a dataset, its epsilons and its time limit, when uploads open and close, and
who sees its leaderboards. The engine works per dataset; this module turns a dataset back
into its round, and the round into the settings its containers run under, so the epsilons
and the time limit an organizer set for the round are the ones every executor uses.
"""

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.config import EpsilonSchedule, Settings
from arena.errors import ConflictError, ForbiddenError, InputError, NotFoundError
from arena.models import (
    Dataset,
    Entry,
    Round,
    Submission,
    SubmissionStatus,
    Visibility,
    as_utc,
    utcnow,
)


class Unlimited(Enum):
    """A quota taken away, where None in a change means "leave it as it is"."""

    NO_LIMIT = "no limit"


NO_LIMIT = Unlimited.NO_LIMIT
#: A change of a quota: a number of uploads, ``NO_LIMIT``, or None (unchanged).
QuotaChange = int | Unlimited | None


def quota_change(value: int | None, remove: bool, label: str) -> QuotaChange:
    """What a form or the command line asks of a quota: a new number, its removal ("no limit"
    ticked, ``--no-daily-quota``), or nothing; both at once is refused, not guessed."""
    if remove and value is not None:
        raise RoundError(f"give a {label} quota or remove it (no limit), not both")
    return NO_LIMIT if remove else value


class RoundError(InputError):
    """A round setting that cannot be used; the message says why."""


@dataclass(frozen=True)
class Window:
    """When a round takes uploads."""

    opens_at: datetime | None
    closes_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.opens_at is not None and now < self.opens_at:
            return "not open yet"
        if self.closes_at is not None and now >= self.closes_at:
            return "closed"
        return "open"


def window(round_: Round) -> Window:
    return Window(as_utc(round_.opens_at), as_utc(round_.closes_at))


def _check(epsilons: list[int], seconds_per_image: float, window_: Window) -> None:
    if not epsilons or any(not 0 <= e <= 255 for e in epsilons):
        raise RoundError(f"epsilons must be one or more values in 0..255, got {epsilons}")
    if seconds_per_image <= 0:
        raise RoundError(f"the time limit per image must be positive, got {seconds_per_image}")
    if window_.opens_at and window_.closes_at and window_.closes_at <= window_.opens_at:
        raise RoundError("a round must close after it opens")


def parse_epsilons(text: str | None, field: str = "ε") -> list[int] | None:
    """Epsilons written as integers separated by commas ("2,4,8,16"); None or blank: not given."""
    if text is None or not text.strip():
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RoundError(f"{field} takes integers separated by commas, e.g. 2,4,8,16; got {text!r}") from None


def create(session: Session, settings: Settings, name: str, dataset: Dataset, *, epsilons: list[int] | None = None,
           eps_schedule: EpsilonSchedule | None = None, seconds_per_image: float | None = None,
           opens_at: datetime | None = None,
           closes_at: datetime | None = None, visibility: Visibility = Visibility.LIVE,
           daily_quota: int | None = None, total_quota: int | None = None) -> Round:
    """A new round on ``dataset``; what is not given comes from the settings (the 2017 defaults)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise RoundError("a round name must be 1 to 200 characters")
    epsilons = sorted(set(epsilons or settings.epsilons))
    seconds = seconds_per_image or settings.seconds_per_image
    _check(epsilons, seconds, Window(as_utc(opens_at), as_utc(closes_at)))
    _check_quotas(daily_quota, total_quota)
    if session.scalar(select(Round).where(Round.name == name)):
        raise ConflictError(f"a round named {name!r} exists")
    if session.scalar(select(Round).where(Round.dataset_id == dataset.id)):
        raise ConflictError(f"dataset {dataset.name!r} already belongs to a round: results are kept per dataset, "
                            "so import the images again under another name for a new round")
    round_ = Round(name=name, dataset=dataset, epsilons=epsilons, eps_schedule=eps_schedule or settings.eps_schedule,
                   seconds_per_image=seconds, opens_at=opens_at,
                   closes_at=closes_at, visibility=visibility, daily_quota=daily_quota, total_quota=total_quota)
    session.add(round_)
    session.flush()
    return round_


def _check_quotas(daily: QuotaChange, total: QuotaChange) -> None:
    for label, value in (("daily", daily), ("total", total)):
        if isinstance(value, int) and value < 1:
            raise RoundError(f"the {label} quota must be at least 1 (leave it out for no limit), got {value}")


def ensure(session: Session, settings: Settings, dataset: Dataset) -> Round:
    """The dataset's round, made with the settings' defaults and named after the dataset when
    it has none: what a one-stage tournament (the demo, the study) needs."""
    return of_dataset(session, dataset.id) or create(session, settings, dataset.name, dataset)


def update(round_: Round, *, opens_at: datetime | None = None, closes_at: datetime | None = None,
           visibility: Visibility | None = None, daily_quota: QuotaChange = None,
           total_quota: QuotaChange = None, rank_baselines: bool | None = None,
           data_public: bool | None = None, refuse_stateful_defenses: bool | None = None) -> Round:
    """Change what organizers may change while a round runs (not its data, epsilons, schedule
    or time limit, which the stored results were computed under). None leaves a setting as it
    is; a quota set to ``NO_LIMIT`` is taken away."""
    if round_.visibility is Visibility.PUBLISHED:
        raise ConflictError(f"round {round_.name!r} is published and frozen")
    if visibility is Visibility.PUBLISHED:
        raise RoundError("publish a round with `arena round publish`: it checks that no job is pending")
    new_window = Window(as_utc(opens_at) or window(round_).opens_at, as_utc(closes_at) or window(round_).closes_at)
    _check(round_.epsilons, round_.seconds_per_image, new_window)
    _check_quotas(daily_quota, total_quota)
    round_.opens_at, round_.closes_at = new_window.opens_at, new_window.closes_at
    for field, value in (("visibility", visibility), ("daily_quota", daily_quota), ("total_quota", total_quota),
                         ("rank_baselines", rank_baselines), ("data_public", data_public),
                         ("refuse_stateful_defenses", refuse_stateful_defenses)):
        if value is not None:
            setattr(round_, field, None if value is NO_LIMIT else value)
    return round_


def find(session: Session, name: str | None = None) -> Round:
    """The named round, or the newest one (the competition's current stage)."""
    query = select(Round).where(Round.name == name) if name is not None else select(Round).order_by(Round.id.desc())
    round_ = session.scalars(query.limit(1)).first()
    if round_ is None:
        known = ", ".join(session.scalars(select(Round.name).order_by(Round.id))) or "none yet"
        what = f"no round named {name!r}" if name is not None else "no round yet"
        raise NotFoundError(f"{what} (rounds: {known}); create one with `arena round create`")
    return round_


def of_dataset(session: Session, dataset_id: int) -> Round | None:
    return session.scalar(select(Round).where(Round.dataset_id == dataset_id))


def entered_by_upload(session: Session, submission: Submission) -> Round:
    """The round a submission was uploaded to (the others it was carried into)."""
    return session.scalars(select(Round).join(Entry, Entry.round_id == Round.id)
                           .where(Entry.submission_id == submission.id).order_by(Entry.carried, Round.id).limit(1)).one()


def run_settings(settings: Settings, round_: Round) -> Settings:
    """The settings a round's work runs under: its epsilons, epsilon schedule and time limit,
    whatever the installation's defaults for new rounds say (the only place they are read
    for running, planning and counting)."""
    return settings.model_copy(update={"epsilons": list(round_.epsilons), "eps_schedule": round_.eps_schedule,
                                       "seconds_per_image": round_.seconds_per_image})


def naming_key(round_: Round) -> bytes:
    """The key the round's containers' input names are made under (``sandbox.staging``)."""
    return bytes.fromhex(round_.naming_key)


def for_uploads(session: Session, name: str | None = None, now: datetime | None = None) -> Round:
    """The round an upload enters: the named one, or the one open now; refused (403) with the
    reason and, where there is one, when uploads open next."""
    now = now or utcnow()
    if name is not None:
        round_ = find(session, name)
        refuse_unless_open(round_, now)
        return round_
    rounds = list(session.scalars(select(Round).order_by(Round.id)))
    open_now = [r for r in rounds if r.visibility is not Visibility.PUBLISHED and window(r).state(now) == "open"]
    if len(open_now) == 1:
        return open_now[0]
    if open_now:
        raise RoundError(f"several rounds take uploads ({', '.join(r.name for r in open_now)}): say which with --round")
    if not rounds:
        raise ForbiddenError("no round takes uploads: there is none yet (`arena dataset import` opens one on the "
                             "dataset it imports; `arena round create` opens one on a dataset imported before)")
    upcoming = [window(r).opens_at for r in rounds if window(r).state(now) == "not open yet"]
    after = f"; the next round opens at {min(upcoming):%Y-%m-%d %H:%M} UTC" if upcoming else ""
    raise ForbiddenError(f"no round takes uploads now{after}")


def refuse_unless_open(round_: Round, now: datetime | None = None) -> None:
    now = now or utcnow()
    if round_.visibility is Visibility.PUBLISHED:
        raise ForbiddenError(f"round {round_.name!r} is published: it takes no more uploads")
    state = window(round_).state(now)
    if state == "not open yet":
        raise ForbiddenError(f"round {round_.name!r} opens at {window(round_).opens_at:%Y-%m-%d %H:%M} UTC")
    if state == "closed":
        raise ForbiddenError(f"round {round_.name!r} closed at {window(round_).closes_at:%Y-%m-%d %H:%M} UTC")


def close(round_: Round, now: datetime | None = None) -> Round:
    """Stop uploads now; results keep being computed."""
    now = now or utcnow()
    if window(round_).state(now) == "closed":
        raise ConflictError(f"round {round_.name!r} is already closed")
    round_.closes_at = now
    if round_.opens_at is not None and as_utc(round_.opens_at) > now:
        round_.opens_at = now
    return round_


def publish(round_: Round, unfinished_jobs: int, now: datetime | None = None) -> Round:
    """Freeze the round and show its leaderboards to everyone: only once every job is done,
    so what is published is final. The caller counts the jobs (``planning.unfinished_jobs``,
    which plans first): planning is execution's, and execution reads the rounds."""
    if round_.visibility is Visibility.PUBLISHED:
        raise ConflictError(f"round {round_.name!r} is already published")
    if unfinished_jobs:
        raise ConflictError(f"round {round_.name!r} has {unfinished_jobs} jobs not done: run them first (`arena run`)")
    now = now or utcnow()
    if window(round_).state(now) != "closed":
        close(round_, now)
    round_.visibility = Visibility.PUBLISHED
    round_.published_at = now
    return round_


def carry(session: Session, into: Round, submissions: list[Submission]) -> list[Submission]:
    """Enter stored submissions into ``into`` without a new upload: the same code, run on the
    round's dataset only. Already entered ones are skipped; only accepted ones can go. The
    entries are made at one moment, so that they are newer than every entry made before
    (``entries.counting``: the latest entered counts) and, among themselves, ordered as the
    submissions were uploaded."""
    if into.visibility is Visibility.PUBLISHED:
        raise ConflictError(f"round {into.name!r} is published and frozen")
    refused = [s.name for s in submissions if s.status is not SubmissionStatus.ACCEPTED]
    if refused:
        raise RoundError(f"only accepted submissions can be carried; not: {', '.join(refused)}")
    present = set(session.scalars(select(Entry.submission_id).where(Entry.round_id == into.id)))
    carried = [s for s in submissions if s.id not in present]
    now = utcnow()
    session.add_all(Entry(round=into, submission=s, carried=True, entered_at=now) for s in carried)
    session.flush()
    return carried
