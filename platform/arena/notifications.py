"""Telling teams and organizers what happened without their asking: a dry run's verdict, a
round's results published.

Off unless configured: mail to the team members' contacts that are e-mail addresses through
the SMTP server of ``ARENA_SMTP_URL`` (``smtp://host:port``), and a JSON POST of every
event to the organizers' ``ARENA_WEBHOOK_URL``. What is said is fixed in the transaction
that made it true (``Notice``) and sent after its commit, so a notice never announces what
was rolled back. Sending never fails the work it reports: an unreachable server is logged
for the organizers and the verdict stands.
"""

import json
import logging
import smtplib
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.error import URLError
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.models import Entry, Round, Submission, SubmissionStatus, Team, TeamMember

logger = logging.getLogger(__name__)

#: How long a notice may wait on the mail server or the webhook.
TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Notice:
    """One event, as mail (to its recipients) and as the webhook's JSON."""

    event: str
    subject: str
    body: str
    recipients: tuple[str, ...]
    data: dict = field(default_factory=dict)


def dry_run_done(session: Session, submission: Submission) -> Notice:
    """To the submission's team: accepted, or rejected with the reason."""
    verdict = submission.status.value
    body = [f"Your submission {submission.name} ({submission.kind.value.replace('_', ' ')}) was {verdict} "
            "after its dry run on the sample batch."]
    if submission.status is SubmissionStatus.REJECTED:
        body.append(f"The reason: {submission.reason}")
    else:
        body.append("It takes part in its round from now on; its jobs run with the next run.")
    return Notice("dry_run_done", f"{submission.name}: {verdict}", "\n\n".join(body),
                  _contacts(session, [submission.team_id]),
                  {"submission": submission.name, "team": submission.team.name, "status": verdict,
                   "reason": submission.reason})


def round_published(session: Session, round_: Round) -> Notice:
    """To every team with an entry in the round: its results are public and final."""
    team_ids = session.scalars(select(Submission.team_id).join(Entry, Entry.submission_id == Submission.id)
                               .where(Entry.round_id == round_.id).distinct()).all()
    body = (f"The results of round {round_.name} are published: its leaderboards, error matrix and results "
            "bundle are public and final.")
    return Notice("round_published", f"Round {round_.name}: results published", body,
                  _contacts(session, list(team_ids)), {"round": round_.name})


def _contacts(session: Session, team_ids: list[int]) -> tuple[str, ...]:
    """The members' contacts that are e-mail addresses (a contact may be anything organizers asked for)."""
    contacts = session.scalars(select(TeamMember.contact).join(Team, TeamMember.team_id == Team.id)
                               .where(Team.id.in_(team_ids), TeamMember.contact.is_not(None))).all()
    return tuple(sorted({c.strip() for c in contacts if "@" in c and " " not in c.strip()}))


def send(settings: Settings, notice: Notice) -> None:
    """Mail it and post it where configured; a failure is logged, never raised."""
    if settings.smtp_url and notice.recipients:
        try:
            _mail(settings, notice)
        except (OSError, smtplib.SMTPException):
            logger.exception("mailing %r to %d recipients failed", notice.subject, len(notice.recipients))
    if settings.webhook_url:
        try:
            _post(settings.webhook_url, {"event": notice.event, **notice.data})
        except (OSError, URLError):
            logger.exception("posting the %s event to the webhook failed", notice.event)


def _post(url: str, payload: dict) -> None:
    """The standard library's client: the app image carries no HTTP client library, and a
    JSON POST needs none (an answer other than 2xx raises HTTPError, a URLError)."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS):  # noqa: S310 - the organizers' own URL
        pass


def _mail(settings: Settings, notice: Notice) -> None:
    server = urlsplit(settings.smtp_url)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = settings.mail_from, ", ".join(notice.recipients), notice.subject
    message.set_content(notice.body)
    with smtplib.SMTP(server.hostname, server.port or 25, timeout=TIMEOUT_SECONDS) as smtp:
        smtp.send_message(message)
