"""Feedback while an upload is sent (issue 30, finding 7): the page sat still for 3 to 17 s
with its button enabled. The form still posts as a plain form; arena.js disables its button,
says "Uploading…" and counts the seconds, and a page the browser brings back is usable again."""

from pathlib import Path

from fastapi.testclient import TestClient

from arena.web.app import create_app
from conftest import make_settings
from factories import synth_dataset
from test_web_tournament import _log_in, browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

ORGANIZER = "organizer-secret"
SCRIPT = Path(__file__).resolve().parents[1] / "web" / "static" / "arena.js"


def test_the_upload_form_carries_the_busy_hook_and_stays_a_plain_form(tmp_path):
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    synth_dataset(settings, 2, batch_size=2)
    client = TestClient(create_app(settings))
    page = client.get("/upload", headers={"Authorization": f"Bearer {ORGANIZER}"}).text
    assert ('<form method="post" action="/upload" enctype="multipart/form-data" class="stack" id="upload-form"\n'
            '  data-busy="Uploading…">') in page  # posts without script too
    assert '<p class="hint" id="upload-status" role="status" aria-live="polite" hidden></p>' in page
    assert '<script src="/static/arena.js' in page and "<script>" not in page  # no inline script (the CSP)
    script = SCRIPT.read_text()
    assert 'querySelectorAll("form[data-busy]")' in script and 'addEventListener("pageshow"' in script


def test_chromium_disables_the_upload_button_while_it_posts_and_again_on_coming_back(tmp_path, browser):  # noqa: F811
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    synth_dataset(settings, 2, batch_size=2)
    with live_server(create_app(settings)) as url:
        page = browser.new_page()
        try:
            _log_in(page, url, ORGANIZER)
            page.goto(f"{url}/upload")
            # a listener after arena.js's keeps the page here, as a slow upload would, and notes
            # whether the form was still going to post (arena.js must not stop it)
            page.evaluate("""() => { window.posts = [];
                document.getElementById('upload-form').addEventListener('submit', (event) => {
                    window.posts.push(!event.defaultPrevented); event.preventDefault(); }); }""")
            page.fill("#upload-form input[name=team]", "red")
            page.set_input_files("#upload-form input[name=archive]",
                                 files=[{"name": "a.zip", "mimeType": "application/zip", "buffer": b"PK"}])
            page.click("#upload-button")
            assert page.is_disabled("#upload-button") and page.inner_text("#upload-button") == "Uploading…"
            assert page.inner_text("#upload-status").startswith("Uploading… ")
            page.evaluate("document.getElementById('upload-form').requestSubmit()")  # a second try sends nothing
            assert page.evaluate("window.posts") == [True, False]
            # the browser brings the page back from its back-forward cache, as it was left
            page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
            assert not page.is_disabled("#upload-button") and page.inner_text("#upload-button") == "Upload"
            assert page.is_hidden("#upload-status")
        finally:
            page.close()
