"""Security headers on every answer: pages, API, static files and errors alike.

The pages load their one script and one stylesheet from /static and run no inline script;
the heatmap cells and the curve key are coloured by ``style`` attributes (computed on the
server), hence ``style-src-attr 'unsafe-inline'``, which allows attributes only, never a
``<style>`` element. The /docs and /redoc pages load Swagger UI and ReDoc from the app
itself (fastapi-offline) but start them with an inline script, so they get a policy of
their own, still with nothing from another origin; they show no secrets.

``Cache-Control: no-store`` goes on everything but the static files: pages and API
answers depend on who asks (logs, per-image results, a new team token), and a shared or
browser cache must not keep them.
"""

PAGES_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
DOCS_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self' 'unsafe-inline'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "worker-src blob:",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
DOCS_PATHS = ("/docs", "/redoc")
COMMON = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: adds the headers to each response that does not set them itself."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        policy = DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGES_POLICY
        extra = [*COMMON, (b"content-security-policy", policy.encode())]
        if not path.startswith("/static/"):
            extra.append((b"cache-control", b"no-store"))

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
