"""The web application: `arena web` serves it with uvicorn.

Errors are answered here and nowhere else: an ``ArenaError`` raised anywhere below a route
(a domain check, an action, a lookup) becomes its ``status`` with its message, like an
``HTTPException``. API errors are JSON ``{"detail": ...}``; page errors are an HTML page with
the same message, so a person in a browser reads what went wrong instead of raw JSON.
"""

import secrets

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.errors import ArenaError
from arena.web import api, pages
from arena.web.cache import StandingsCache
from arena.web.headers import SecurityHeaders
from arena.web.limits import FailureLimiter
from arena.web.runner import TournamentRunner
from arena.web.uploads import BodyLimit


def create_app(settings: Settings) -> FastAPI:
    """An app over ``settings``' database, which must be at the current schema (``arena db upgrade``)."""
    db.require_schema(settings)
    app = FastAPI(title="Arena", description="Attack-defense tournaments in the NIPS 2017 competition format.",
                  version="1.0")
    app.state.settings = settings
    app.state.organizer_token = (settings.organizer_token.get_secret_value() if settings.organizer_token
                                 else secrets.token_urlsafe(24))
    app.state.standings = StandingsCache(settings)
    app.state.runner = TournamentRunner(settings)
    app.state.login_limiter = FailureLimiter(settings.login_max_failures, settings.login_window_seconds)
    app.mount("/static", StaticFiles(directory=REPO_ROOT / "web" / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_middleware(SecurityHeaders)  # outermost of the two: a 413 gets the headers too
    app.add_exception_handler(ArenaError, _arena_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api", "/docs", "/openapi", "/static"))


def _page(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    """The error page: the status and the sentence, for a person in a browser."""
    return pages.templates.TemplateResponse(
        request, "error.html", {"status": status, "detail": detail, "who": None, "tournament": None},
        status_code=status, headers=headers,
    )


async def _arena_error(request: Request, exc: ArenaError) -> Response:
    """An expected failure from the domain or an action: its own status, its own sentence."""
    if not _wants_page(request):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)
    return _page(request, exc.status, str(exc))


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """What is about HTTP itself: authentication, a body too large, an unknown path or method."""
    if not _wants_page(request):
        return await http_exception_handler(request, exc)
    return _page(request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    if not _wants_page(request):
        return await request_validation_exception_handler(request, exc)
    return _page(request, 422, "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors()))
