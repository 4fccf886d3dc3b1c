"""Upload quotas and deadlines, per team, round and track.

What counts against a quota is what the team sent: an upload whose dry run the platform
failed (the engine, a missing image) does not count while it waits to be tried again; one
rejected by its dry run does, as the team spent the platform's time on it. The daily quota is over any 24
hours, so the refusal can say exactly when the next upload is allowed.
"""

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena import job_states
from arena.errors import QuotaError
from arena.models import DryRun, Entry, Round, Submission, SubmissionKind, Team, as_utc, utcnow

DAY = timedelta(hours=24)


def uploads(session: Session, round_: Round, team: Team, kind: SubmissionKind) -> list[datetime]:
    """When the team's uploads of this track entered the round (carried ones excluded), oldest first."""
    query = (
        select(Entry.entered_at).join(Submission).outerjoin(DryRun, DryRun.submission_id == Submission.id)
        .where(Entry.round_id == round_.id, Entry.carried.is_(False), Submission.team_id == team.id,
               Submission.kind == kind, ~job_states.failed(DryRun) | DryRun.id.is_(None))
        .order_by(Entry.entered_at)
    )
    return [as_utc(moment) for moment in session.scalars(query)]


def check(session: Session, round_: Round, team: Team, kind: SubmissionKind, now: datetime | None = None) -> None:
    """Refuse (429) an upload past the team's quota, saying when the next is allowed."""
    now = now or utcnow()
    done = uploads(session, round_, team, kind)
    track = kind.value.replace("_", " ")
    if round_.total_quota is not None and len(done) >= round_.total_quota:
        raise QuotaError(f"team {team.name!r} has used its {round_.total_quota} {track} uploads in round "
                         f"{round_.name!r}; no more are allowed in this round")
    if round_.daily_quota is not None:
        today = [moment for moment in done if moment > now - DAY]
        if len(today) >= round_.daily_quota:
            retry_at = today[-round_.daily_quota] + DAY
            raise QuotaError(f"team {team.name!r} has used its {round_.daily_quota} {track} uploads of the last 24 "
                             f"hours in round {round_.name!r}; the next is allowed at {retry_at:%Y-%m-%d %H:%M:%S} UTC",
                             retry_at)


def left(session: Session, round_: Round, team: Team, kind: SubmissionKind, now: datetime | None = None) -> int | None:
    """Uploads the team may still make in the track now (None: no quota applies)."""
    now = now or utcnow()
    done = uploads(session, round_, team, kind)
    limits = []
    if round_.total_quota is not None:
        limits.append(round_.total_quota - len(done))
    if round_.daily_quota is not None:
        limits.append(round_.daily_quota - sum(moment > now - DAY for moment in done))
    return max(0, min(limits)) if limits else None
