"""Cross-site forms in Chromium: a page served from another port of Arena's host is the same
site to the browser, so the SameSite=Strict session cookie goes with its forms; only the
origin check (``web/origins.py``) stands between that page and the organizer's session."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arena.admin import tournament
from arena.admin.teams import issue_token
from arena.db import transaction
from arena.web.app import create_app
from conftest import make_settings
from servers import free_port
from test_web_tournament import _log_in, browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

ORGANIZER = "organizer-secret"


@contextmanager
def foreign_page(html: str) -> Iterator[str]:
    """One page, served on another loopback port by the standard library's server."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=20)


def _posting(action: str, fields: dict[str, str]) -> str:
    """A page that submits a form to ``action`` as soon as it loads."""
    inputs = "".join(f'<input name="{name}" value="{value}">' for name, value in fields.items())
    return (f'<form id="f" method="post" action="{action}">{inputs}</form>'
            '<script>document.getElementById("f").submit()</script>')


@pytest.fixture
def arena(tmp_path) -> Iterator[tuple[str, object]]:
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    with live_server(create_app(settings)) as url:
        yield url, settings


def _title(settings) -> str:
    with transaction(settings) as session:
        return tournament.current(session).title


def test_chromium_a_same_site_page_cannot_use_the_organizer_s_session(arena, browser):  # noqa: F811
    url, settings = arena
    page = browser.new_context().new_page()
    page.set_default_timeout(60_000)
    _log_in(page, url, ORGANIZER)
    with foreign_page(_posting(f"{url}/organizer/settings", {"title": "Taken over", "uploads_open": "true"})) as there:
        with page.expect_response(f"{url}/organizer/settings") as answer:
            page.goto(there)
    assert answer.value.status == 403 and "from another site" in page.inner_text("body")
    assert _title(settings) != "Taken over"
    page.goto(f"{url}/organizer")  # the session itself is untouched
    assert page.inner_text(".who").split()[:3] == ["organizer", "Log", "out"]


def test_chromium_a_same_site_page_cannot_log_the_browser_in_as_its_team(arena, browser):  # noqa: F811
    url, settings = arena
    with transaction(settings) as session:
        attackers = issue_token(session, "attackers")
    page = browser.new_context().new_page()
    page.set_default_timeout(60_000)
    with foreign_page(_posting(f"{url}/login", {"token": attackers})) as there:
        with page.expect_response(f"{url}/login") as answer:
            page.goto(there)
    assert answer.value.status == 403
    page.goto(f"{url}/")
    assert "Log in" in page.inner_text(".who") and page.context.cookies(url) == []
