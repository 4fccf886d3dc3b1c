"""Who is calling: an organizer, a team, or the public.

Credentials come as ``Authorization: Bearer <token>`` (API clients) or in the ``arena_token``
cookie that the login page sets (browsers). The cookie is HttpOnly and SameSite=Strict,
so another site cannot make a logged-in browser post a form here.
"""

import secrets
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from arena.admin import teams
from arena.db import transaction
from arena.models import Submission, Team
from arena.web.deps import get_session

COOKIE = "arena_token"


@dataclass(frozen=True)
class Caller:
    organizer: bool = False
    team_id: int | None = None
    team_name: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.organizer and self.team_id is None

    def owns(self, submission: Submission) -> bool:
        return self.organizer or (self.team_id is not None and submission.team_id == self.team_id)


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.cookies.get(COOKIE) or None


def presents_credential(request: Request) -> bool:
    return _token(request) is not None


def identify(request: Request, token: str | None, session: Session) -> Caller:
    if token is None:
        return Caller()
    organizer = request.app.state.organizer_token
    if secrets.compare_digest(token.encode(), organizer.encode()):
        return Caller(organizer=True)
    team: Team | None = teams.team_for_token(session, token)
    if team is None:
        raise HTTPException(401, "unknown or revoked token; log in again with a valid one")
    return Caller(team_id=team.id, team_name=team.name)


def caller(request: Request, session: Session = Depends(get_session)) -> Caller:
    return identify(request, _token(request), session)


def caller_in_own_session(request: Request) -> Caller:
    """For the cached reads, which otherwise touch no database."""
    with transaction(request.app.state.settings) as session:
        return identify(request, _token(request), session)


def organizer(who: Caller = Depends(caller)) -> Caller:
    if who.anonymous:
        raise HTTPException(401, "organizer credential required", headers={"WWW-Authenticate": "Bearer"})
    if not who.organizer:
        raise HTTPException(403, "only organizers may do this")
    return who


def team_or_organizer(who: Caller = Depends(caller)) -> Caller:
    if who.anonymous:
        raise HTTPException(401, "a team token or the organizer credential is required",
                            headers={"WWW-Authenticate": "Bearer"})
    return who
