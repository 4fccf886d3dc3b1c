"""The tournament's organizer-controlled state: its settings row and disqualifications.

Settings that organizers change while a tournament runs (leaderboards hidden until the end,
uploads closed, the overview and rules pages, self-registration) live in the database rather
than the environment, so every web process and worker sees the same values without a restart.
"""

from sqlalchemy.orm import Session

from arena.errors import InputError
from arena.models import Submission, SubmissionStatus, Tournament

SETTINGS_ROW = 1  # made by migration 0007
MAX_PAGE_CHARACTERS = 100_000  # the overview and the rules, in Markdown


class SettingError(InputError):
    """A setting or an organizer action that cannot be taken as given; the message says why."""


def current(session: Session) -> Tournament:
    """The one settings row (migration 0007 makes it): reading it never writes."""
    return session.get_one(Tournament, SETTINGS_ROW)


def update(session: Session, title: str | None = None, leaderboards_public: bool | None = None,
           uploads_open: bool | None = None, *, overview: str | None = None, rules: str | None = None,
           self_registration: bool | None = None) -> Tournament:
    """Change what is given; None leaves a setting as it is."""
    row = current(session)
    if title is not None:
        if not title.strip() or len(title) > 200:
            raise SettingError("the title must be 1 to 200 characters")
        row.title = title.strip()
    for name, text in (("overview", overview), ("rules", rules)):
        if text is not None and len(text) > MAX_PAGE_CHARACTERS:
            raise SettingError(f"the {name} is {len(text)} characters; at most {MAX_PAGE_CHARACTERS} are kept")
    for field, value in (("leaderboards_public", leaderboards_public), ("uploads_open", uploads_open),
                         ("overview", overview), ("rules", rules), ("self_registration", self_registration)):
        if value is not None:
            setattr(row, field, value)
    return row


def check_reason(reason: str) -> None:
    if not reason.strip():
        raise SettingError("say why the submission is disqualified")


def disqualify(submission: Submission, reason: str) -> None:
    """Take a submission out of every table and of planning; its stored results are kept, so
    the decision can be reviewed (scoring reads only accepted submissions)."""
    check_reason(reason)
    submission.status = SubmissionStatus.DISQUALIFIED
    submission.reason = reason.strip()
