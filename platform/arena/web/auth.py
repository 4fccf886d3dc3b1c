"""Who is calling: an organizer, a team, or the public.

API clients send ``Authorization: Bearer <token>``. Browsers log in once on ``/login``:
the token is checked there and exchanged for a random session id, which is all the
``arena_session`` cookie carries (HttpOnly, SameSite=Strict, Secure over HTTPS); the
database keeps only the id's sha256, who it is and when it expires (``WebSession``), and
logging out deletes it. A session is bound to the credential it was opened with, so
issuing a team a new token (or changing the organizer credential) ends its sessions.

Wrong tokens are counted per client address (``web.limits``): past the limit, any
credential from there is answered 429 until the window has passed.
"""

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta, timezone

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from arena.admin import teams
from arena.callers import Caller
from arena.db import transaction
from arena.models import Team, WebSession, utcnow

COOKIE = "arena_session"
#: The cookie that held the raw token before sessions; removed at login and logout.
OLD_COOKIE = "arena_token"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def presents_credential(request: Request) -> bool:
    return _bearer(request) is not None or bool(request.cookies.get(COOKIE))


def client_address(request: Request) -> str:
    """The address the limiters count: the connection's, or a trusted proxy's forwarded one
    (``web/serving.py``)."""
    return request.client.host if request.client else "unknown"


def identify(request: Request, token: str | None, session: Session) -> Caller:
    """Whose token this is: 401 for a wrong one, 429 while the address has sent too many wrong ones."""
    if token is None:
        return Caller()
    limiter = request.app.state.login_limiter
    client = client_address(request)
    wait = limiter.retry_after(client)
    if wait is not None:
        raise HTTPException(429, f"too many wrong credentials from this address; try again in {wait} seconds",
                            headers={"Retry-After": str(wait)})
    organizer = request.app.state.organizer_token
    if secrets.compare_digest(token.encode(), organizer.encode()):
        return Caller(organizer=True)
    team: Team | None = teams.team_for_token(session, token)
    if team is None:
        limiter.count(client)
        raise HTTPException(401, "unknown or revoked token; log in again with a valid one")
    return Caller(team_id=team.id, team_name=team.name)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _binding(request: Request, sid: str, team: Team | None) -> str:
    """The session's tie to its credential: keyed by the session id, which the database never sees."""
    credential = f"team:{team.token_sha256}" if team else f"organizer:{_sha256(request.app.state.organizer_token)}"
    return hmac.new(sid.encode(), credential.encode(), hashlib.sha256).hexdigest()


def open_session(request: Request, session: Session, who: Caller) -> str:
    """A new session for ``who``; its id, for the cookie. Expired sessions are swept here."""
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    sid = secrets.token_urlsafe(32)
    team = session.get(Team, who.team_id) if who.team_id is not None else None
    hours = request.app.state.settings.session_hours
    session.add(WebSession(sid_sha256=_sha256(sid), team_id=who.team_id, binding=_binding(request, sid, team),
                           created_at=now, expires_at=now + timedelta(hours=hours)))
    return sid


def close_session(session: Session, sid: str | None) -> None:
    if sid:
        session.execute(delete(WebSession).where(WebSession.sid_sha256 == _sha256(sid)))


def _session_caller(request: Request, session: Session, sid: str) -> Caller:
    """Who the session cookie stands for; the public for an unknown, expired or outdated one."""
    row = session.scalar(select(WebSession).where(WebSession.sid_sha256 == _sha256(sid)))
    if row is None:
        return Caller()
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=timezone.utc)
    if expires <= datetime.now(timezone.utc):
        return Caller()
    team = session.get(Team, row.team_id) if row.team_id is not None else None
    if row.team_id is not None and (team is None or team.token_sha256 is None):
        return Caller()
    if not hmac.compare_digest(row.binding, _binding(request, sid, team)):
        return Caller()
    return Caller(team_id=team.id, team_name=team.name) if team else Caller(organizer=True)


def _identify_request(request: Request, session: Session) -> Caller:
    token = _bearer(request)
    if token is not None:
        return identify(request, token, session)
    sid = request.cookies.get(COOKIE)
    return _session_caller(request, session, sid) if sid else Caller()


def set_session_cookie(request: Request, response: Response, sid: str) -> None:
    settings = request.app.state.settings
    response.set_cookie(COOKIE, sid, max_age=int(settings.session_hours * 3600), httponly=True, samesite="strict",
                        secure=secure_cookies(request))
    response.delete_cookie(OLD_COOKIE)


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure_cookies(request))
    response.delete_cookie(OLD_COOKIE)


def secure_cookies(request: Request) -> bool:
    """Secure when served over HTTPS (behind a proxy: as uvicorn's proxy headers say), or
    always with ``ARENA_SECURE_COOKIES=true``."""
    return request.app.state.settings.secure_cookies or request.url.scheme == "https"


def caller(request: Request) -> Caller:
    """Who asks, identified in a transaction of its own, ended before the route runs. Never
    the route's session: a route that also opens its own (an upload, every action) would
    then hold two connections at once, and thirty uploads at once took the pool's fifteen
    and waited on each other until the pool's 30 s timeout (500s, in bench/upload_burst.py)."""
    with transaction(request.app.state.settings) as session:
        return _identify_request(request, session)


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
