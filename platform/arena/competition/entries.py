"""Entries: which submissions take part in a round, and which one counts for each team.

Every accepted entry is run (so a team that changes its pick needs no new run), but the
leaderboards a team sees rank one submission per team and track: the one it chose before
the deadline, else its latest accepted *entry into that round* (an upload or a carry, by
``Entry.entered_at``; not by when the code was uploaded), so the entries an organizer
carries in count over a team's earlier direct uploads until the team picks another.
``counting`` is the one place this rule lives: the leaderboards, team pages, submission
pages and the results bundle all ask it. Organizers can look at every entry.
"""

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.competition import rounds
from arena.competition.rounds import RoundError, window
from arena.errors import ForbiddenError, NotFoundError
from arena.models import Entry, Round, Submission, SubmissionStatus, Team, utcnow


class Scope(StrEnum):
    """Which entries a leaderboard ranks."""

    COUNTING = "counting"  # one per team and track, as teams see it
    ALL = "all"  # every accepted entry, for organizers


def enter(session: Session, round_: Round, submission: Submission) -> Entry:
    entry = Entry(round=round_, submission=submission)
    session.add(entry)
    return entry


def accepted(session: Session, dataset_id: int) -> list[int]:
    """Accepted submissions entered in the round that owns the dataset, by id."""
    query = (
        select(Submission.id)
        .join(Entry, Entry.submission_id == Submission.id)
        .join(Round, Entry.round_id == Round.id)
        .where(Round.dataset_id == dataset_id, Submission.status == SubmissionStatus.ACCEPTED)
        .order_by(Submission.id)
    )
    return list(session.scalars(query))


def counting(session: Session, dataset_id: int) -> list[int]:
    """One accepted entry per (team, track): the chosen one, else the one entered into the
    round last (uploaded or carried: ``Entry.entered_at``, then the submission id on a tie)."""
    rows = session.execute(
        select(Submission.id, Submission.team_id, Submission.kind)
        .join(Entry, Entry.submission_id == Submission.id)
        .join(Round, Entry.round_id == Round.id)
        .where(Round.dataset_id == dataset_id, Submission.status == SubmissionStatus.ACCEPTED)
        # the chosen one, else the latest entered, comes last
        .order_by(Entry.chosen, Entry.entered_at, Submission.id)
    ).all()
    best = {(team, kind): submission for submission, team, kind in rows}
    return sorted(best.values())


def in_scope(session: Session, dataset_id: int, scope: Scope) -> list[int]:
    return counting(session, dataset_id) if scope is Scope.COUNTING else accepted(session, dataset_id)


def choose(session: Session, round_: Round, submission: Submission, team: Team | None = None) -> Entry:
    """Make ``submission`` the one that counts for its team and track in the round; a team
    (``team`` given) may do it only for its own and only before the deadline."""
    if team is not None and submission.team_id != team.id:
        raise ForbiddenError("a team can choose only among its own submissions")
    if team is not None and window(round_).state(utcnow()) == "closed":
        raise ForbiddenError(f"round {round_.name!r} is closed: the counting submissions are fixed")
    entry = session.get(Entry, (round_.id, submission.id))
    if entry is None:
        raise RoundError(f"{submission.name!r} is not entered in round {round_.name!r}")
    if submission.status is not SubmissionStatus.ACCEPTED:
        raise RoundError(f"{submission.name!r} is {submission.status.value}: only an accepted submission can count")
    same_track = (
        select(Entry).join(Submission)
        .where(Entry.round_id == round_.id, Submission.team_id == submission.team_id, Submission.kind == submission.kind)
    )
    for other in session.scalars(same_track):
        other.chosen = other.submission_id == submission.id
    return entry


def carry_into(session: Session, round_name: str, names: list[str], counting_from: str | None = None) -> list[Submission]:
    """Carry submissions named, and every team's counting entries of round ``counting_from``,
    into round ``round_name``; the ones newly entered."""
    chosen = [_named(session, name) for name in names]
    if counting_from is not None:
        ids = counting(session, rounds.find(session, counting_from).dataset_id)
        chosen += list(session.scalars(select(Submission).where(Submission.id.in_(ids))))
    if not chosen:
        raise RoundError("name submissions to carry, or a round whose counting entries to carry")
    return rounds.carry(session, rounds.find(session, round_name), chosen)


def _named(session: Session, name: str) -> Submission:
    submission = session.scalar(select(Submission).where(Submission.name == name))
    if submission is None:
        raise NotFoundError(f"no submission named {name!r}")
    return submission
