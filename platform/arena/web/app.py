"""The web application: `arena web` serves it with uvicorn.

Errors are answered here and nowhere else: an ``ArenaError`` raised anywhere below a route
(a domain check, an action, a lookup) becomes its ``status`` with its message, like an
``HTTPException``. API errors are JSON ``{"detail": ...}``; page errors are an HTML page with
the same message, so a person in a browser reads what went wrong instead of raw JSON.
"""

import logging
import math
import secrets
from http import HTTPStatus
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from arena import REPO_ROOT, db
from arena.admin import tournament
from arena.callers import Caller
from arena.config import Settings
from arena.db import transaction
from arena.errors import ArenaError, PlatformError, QuotaError
from arena.models import utcnow
from arena.web import api, competition_pages, compression, pages
from arena.web.auth import caller
from arena.web.bodies import BodyGate
from arena.web.cache import AfterChanges, StandingsCache
from arena.web.checker import UploadChecker
from arena.web.headers import SecurityHeaders
from arena.web.limits import AddressLimiter
from arena.web.origins import SameOrigin
from arena.web.runner import TournamentRunner

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """An app over ``settings``' database, which must be at the current schema (``arena db upgrade``)."""
    db.require_schema(settings)
    # /docs and /redoc with Swagger UI's and ReDoc's files served from the app itself (the
    # fastapi-offline package ships them), not from a CDN: they work on a machine without internet.
    app = FastAPIOffline(title="Arena", description="Attack-defense tournaments in the NIPS 2017 competition format.",
                         version="1.0", static_url=DOCS_STATIC)
    app.state.settings = settings
    app.state.organizer_token = (settings.organizer_token.get_secret_value() if settings.organizer_token
                                 else secrets.token_urlsafe(24))
    app.state.standings = StandingsCache(settings)
    app.state.runner = TournamentRunner(settings)
    app.state.checker = UploadChecker(settings)
    app.state.login_limiter = AddressLimiter(settings.login_max_failures, settings.login_window_seconds)
    app.state.registration_limiter = AddressLimiter(settings.registrations_per_hour, 3600)
    app.mount("/static", StaticFiles(directory=REPO_ROOT / "web" / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(competition_pages.router)
    app.add_middleware(BodyGate, limit=settings.max_upload_bytes, idle_seconds=settings.body_idle_seconds)
    app.add_middleware(BlankFieldsAreUnset)
    app.add_middleware(AfterChanges)  # inside the gzip: it sees the handler's own answer
    app.add_middleware(GZipMiddleware, minimum_size=compression.MINIMUM_SIZE, compresslevel=compression.MIDDLEWARE_LEVEL)
    app.add_middleware(SameOrigin, answer=_http_error)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders)  # outermost: a 413 gets the headers too
    app.add_exception_handler(ArenaError, _arena_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return app


DOCS_STATIC = "/static-offline-docs"
#: Paths that are not pages: the API, its description and documentation, static files.
NOT_PAGES = ("/api", "/docs", "/redoc", "/openapi", "/static")


def _wants_page(request: Request) -> bool:
    return not request.url.path.startswith(NOT_PAGES)


class BlankFieldsAreUnset:
    """On pages, a query parameter sent empty is a parameter not sent.

    An HTML form sends every field, so a form left blank (``top_attacks=&eps=``) must mean
    "not set", as a link without the parameter does, and not be refused as a bad number.
    The API keeps its parameters as sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["query_string"] and not scope["path"].startswith(NOT_PAGES):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(key, value) for key, value in pairs if value.strip()]
            if len(kept) != len(pairs):
                scope = dict(scope, query_string=urlencode(kept).encode("latin-1"))
        await self.app(scope, receive, send)


def _visitor(request: Request) -> Caller:
    """Who asks, for an error's answer; nobody when that cannot be said (a wrong credential,
    the database down): the answer then says less, never more."""
    try:
        return caller(request)
    except Exception:  # noqa: BLE001 - an error must be answered whatever else fails
        return Caller()


def _title(request: Request) -> dict | None:
    """The tournament's title for the error page's header; none when the database cannot say."""
    try:
        with transaction(request.app.state.settings) as session:
            return {"title": tournament.current(session).title}
    except Exception:  # noqa: BLE001 - an error page must be answered even when the database is down
        return None


def _page(request: Request, status: int, detail: str, headers: dict | None = None) -> Response:
    """The error page: the status in words and the sentence, for a person in a browser, with
    the header of whoever asks (a team refused its upload is still logged in). A 401 links the
    login page with the page asked for as ``next``, so that logging in returns to it; a
    refused form links back to the page it was sent from (its Referer, when on this site)."""
    asked = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    form = None
    if request.method != "GET":
        referer = urlsplit(request.headers.get("referer", ""))
        if referer.netloc == request.url.netloc and referer.path:
            form = pages.local_path(referer.path + (f"?{referer.query}" if referer.query else ""))
    return pages.templates.TemplateResponse(
        request, "error.html",
        {"status": status, "phrase": _phrase(status), "detail": detail, "who": _visitor(request),
         "tournament": _title(request), "back": asked if request.method == "GET" else None, "form": form},
        status_code=status, headers=headers,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _arena_error(request: Request, exc: ArenaError) -> Response:
    """An expected failure from the domain or an action: its own status, its own sentence
    (and, for a quota, when to come back, as HTTP's Retry-After in seconds)."""
    headers = None
    if isinstance(exc, QuotaError) and exc.retry_at is not None:
        headers = {"Retry-After": str(max(1, math.ceil((exc.retry_at - utcnow()).total_seconds())))}
    message = str(exc)
    if isinstance(exc, PlatformError):  # the engine's own words are for organizers and the log
        logger.error("%s %s: %s", request.method, request.url.path, message)
        message = message if (await run_in_threadpool(_visitor, request)).organizer else exc.public
    if not _wants_page(request):
        return JSONResponse({"detail": message}, status_code=exc.status, headers=headers)
    return await run_in_threadpool(_page, request, exc.status, message, headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """What is about HTTP itself: authentication, a body too large, an unknown path or method."""
    if not _wants_page(request):
        return await http_exception_handler(request, exc)
    return await run_in_threadpool(_page, request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    if not _wants_page(request):
        return await request_validation_exception_handler(request, exc)
    return await run_in_threadpool(_page, request, 422, " ".join(explain(error) for error in exc.errors()))


#: How the pages' fields are named on the pages.
LABELS = {"eps": "ε (eps)", "top_attacks": "top attacks", "top_defenses": "top defenses", "value": "value",
          "attack_id": "attack", "defense_id": "defense", "offset": "offset", "dataset": "dataset"}


def explain(error: dict) -> str:
    """One sentence for one of FastAPI's validation errors: the field, what it must be, what it got."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body", "header", "cookie")]
    name = loc[-1] if loc else "a field"
    label = LABELS.get(name, name.replace("_", " "))
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    if kind == "missing":
        return f"{label} is required."
    expected = {
        "int_parsing": "a whole number",
        "int_from_float": "a whole number",
        "bool_parsing": "true or false",
        "greater_than_equal": f"at least {ctx.get('ge')}",
        "greater_than": f"more than {ctx.get('gt')}",
        "less_than_equal": f"at most {ctx.get('le')}",
        "less_than": f"less than {ctx.get('lt')}",
        "string_too_short": f"at least {ctx.get('min_length')} character(s) long",
        "string_too_long": f"at most {ctx.get('max_length')} characters long",
        "enum": f"one of {ctx.get('expected')}",
        "literal_error": f"one of {ctx.get('expected')}",
    }.get(kind, str(error.get("msg", "valid")).removeprefix("Input should be ").removeprefix("Value error, "))
    given = error.get("input")
    if isinstance(given, str | int | float) and not isinstance(given, bool):
        shown = str(given) if len(str(given)) <= 40 else str(given)[:40] + "…"
        return f"{label} must be {expected}, not “{shown}”."
    return f"{label} must be {expected}."
