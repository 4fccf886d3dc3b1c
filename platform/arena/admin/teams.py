"""Teams and their web tokens.

A token is shown once when issued and only its sha256 is stored, so a copy of the database
does not let anyone upload in a team's name. Issuing a new token revokes the old one.
"""

import hashlib
import secrets
import unicodedata

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.errors import ConflictError, InputError
from arena.models import Submission, Team, TeamMember, name_key


class TeamError(InputError):
    """A team name that cannot be used; the message says why."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: Characters a team name may not hold: control, invisible and direction-changing ones (a
#: name that reads as another, or turns the text after it around), and path separators
#: (a team's page is /teams/NAME).
REFUSED_CATEGORIES = {"Cc": "a control character", "Cf": "an invisible or direction-changing character",
                      "Co": "a private-use character", "Cs": "a surrogate", "Zl": "a line separator",
                      "Zp": "a paragraph separator"}
REFUSED_CHARACTERS = {"/": "a slash", "\\": "a backslash"}


def team_name(text: str) -> str:
    """The name as it is stored: NFKC-normalised (a full-width "ｂｒａｖｏ" is "bravo"), blanks
    around it dropped; refused, saying which character and why, when it cannot be a team's."""
    name = unicodedata.normalize("NFKC", text).strip()
    if not name or len(name) > 200:
        raise TeamError("a team name must be 1 to 200 characters")
    for character in name:
        why = REFUSED_CHARACTERS.get(character) or REFUSED_CATEGORIES.get(unicodedata.category(character))
        if why:
            raise TeamError(f"a team name may not hold {why} (U+{ord(character):04X})")
    return name


def find(session: Session, name: str) -> Team | None:
    """The team of that name, whatever its case ("BRAVO" is bravo's); a name that cannot be
    one is refused."""
    return session.scalar(select(Team).where(Team.name_key == name_key(team_name(name))))


def find_or_create(session: Session, name: str) -> Team:
    team = find(session, name)
    name = team_name(name)
    if team is None:
        team = Team(name=name)
        session.add(team)
        session.flush()
    return team


def issue_token(session: Session, name: str) -> str:
    """A new token for the team (created if new); the previous token stops working."""
    token = secrets.token_urlsafe(24)
    find_or_create(session, name).token_sha256 = token_hash(token)
    return token


def team_for_token(session: Session, token: str) -> Team | None:
    return session.scalar(select(Team).where(Team.token_sha256 == token_hash(token)))


def add_member(session: Session, team_name: str, name: str, contact: str | None = None) -> TeamMember:
    name, contact = name.strip(), (contact or "").strip() or None
    if not name or len(name) > 200 or (contact and len(contact) > 200):
        raise TeamError("a member's name (and contact) must be 1 to 200 characters")
    team = find_or_create(session, team_name)
    member = TeamMember(name=name, contact=contact)
    team.members.append(member)
    return member


def overview(session: Session) -> list[tuple[str, str, int]]:
    """(team, its members as one line, how many submissions it made), by team name."""
    counts = dict(session.execute(select(Submission.team_id, func.count(Submission.id)).group_by(Submission.team_id)).all())
    return [
        (team.name, ", ".join(m.name + (f" <{m.contact}>" if m.contact else "") for m in team.members),
         counts.get(team.id, 0))
        for team in session.scalars(select(Team).order_by(Team.name))
    ]


def register(session: Session, name: str, member: str, contact: str | None) -> str:
    """A team that signs itself up (where organizers allow it): a new name only, with its first
    member; its token, to show once."""
    if (team := find(session, name)) is not None:
        raise ConflictError(f"a team named {team.name!r} exists (names are compared whatever their case): choose "
                            "another name, or ask its members for the token")
    add_member(session, name, member, contact)
    return issue_token(session, name)
