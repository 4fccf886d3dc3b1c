"""The web application: `arena web` serves it with uvicorn.

API errors are JSON ``{"detail": ...}``; page errors are an HTML page with the same
message, so a person in a browser reads what went wrong instead of raw JSON.
"""

import secrets

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from arena import REPO_ROOT, db
from arena.config import Settings
from arena.web import api, pages
from arena.web.cache import StandingsCache
from arena.web.runner import TournamentRunner
from arena.web.uploads import BodyLimit


def create_app(settings: Settings) -> FastAPI:
    """An app over ``settings``' database; the schema is brought up to date first."""
    db.upgrade(settings)
    app = FastAPI(title="Arena", description="Attack-defense tournaments in the NIPS 2017 competition format.",
                  version="1.0")
    app.state.settings = settings
    app.state.organizer_token = (settings.organizer_token.get_secret_value() if settings.organizer_token
                                 else secrets.token_urlsafe(24))
    app.state.standings = StandingsCache(settings)
    app.state.runner = TournamentRunner(settings)
    app.mount("/static", StaticFiles(directory=REPO_ROOT / "web" / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api", "/docs", "/openapi", "/static"))


async def _http_error(request: Request, exc: StarletteHTTPException):
    if not _wants_page(request):
        return await http_exception_handler(request, exc)
    return pages.templates.TemplateResponse(
        request, "error.html", {"status": exc.status_code, "detail": exc.detail, "who": None, "tournament": None},
        status_code=exc.status_code, headers=getattr(exc, "headers", None),
    )


async def _validation_error(request: Request, exc: RequestValidationError):
    if not _wants_page(request):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in exc.errors())
    return pages.templates.TemplateResponse(
        request, "error.html", {"status": 422, "detail": problems, "who": None, "tournament": None}, status_code=422
    )
