"""Cross-site requests: a browser's state-changing request must come from Arena's own pages.

The session cookie is SameSite=Strict, but "site" ignores the port and the scheme: a page
served from another port of the same host (or any subdomain's page, on a shared domain) is
same-site, and the browser sends the cookie with its forms. So every state-changing request
that a browser could send on its own (a POST without an ``Authorization`` header, with or
without the cookie, ``/login`` included, so that no foreign page logs a browser in as the
attacker's team) must say it comes from this origin. Browsers name the origin of every POST
(``Origin``; ``Referer`` where an older one does not); a request naming another origin, or
the opaque ``null``, is refused before its body is read. A request naming none comes from a
program, not from a visitor's browser, and cannot ride a visitor's cookie.

API clients that send ``Authorization: Bearer`` are not checked: a foreign page cannot set
that header without a CORS preflight, which Arena never grants.
"""

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}
DEFAULT_PORTS = {"http": 80, "https": 443}

Answer = Callable[[Request, HTTPException], Awaitable[Response]]


def _origin(scheme: str, netloc: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, as origins compare."""
    parts = urlsplit(f"{scheme}://{netloc}")
    return parts.scheme, (parts.hostname or ""), parts.port or DEFAULT_PORTS.get(parts.scheme)


def claimed_origin(headers: Headers) -> str | None:
    """Where the browser says the request comes from: ``Origin``, else the ``Referer``'s origin."""
    origin = headers.get("origin")
    if origin is not None:
        return origin.strip()
    referer = headers.get("referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else "null"
    return None


def is_cross_site(scope: Scope) -> str | None:
    """The foreign origin a state-changing browser request names, or None when it may go on."""
    headers = Headers(scope=scope)
    if scope["method"] in SAFE_METHODS or headers.get("authorization"):
        return None
    claimed = claimed_origin(headers)
    if claimed is None:
        return None
    if claimed == "null":
        return claimed
    parts = urlsplit(claimed)
    if _origin(parts.scheme, parts.netloc) != _origin(scope["scheme"], headers.get("host", "")):
        return claimed
    return None


class SameOrigin:
    """ASGI middleware: refuses (403) a cross-site state-changing request before its body is
    read, answered as the app answers any HTTP error (``answer``: a page or JSON)."""

    def __init__(self, app: ASGIApp, answer: Answer) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        foreign = is_cross_site(scope) if scope["type"] == "http" else None
        if foreign is None:
            return await self.app(scope, receive, send)
        refusal = HTTPException(403, f"a request from another site ({foreign[:100]}) is refused: "
                                     "send this form from Arena's own pages")
        response = await self.answer(Request(scope, receive), refusal)
        await response(scope, receive, send)
