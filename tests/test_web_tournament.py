"""The web app over a real tournament: real containers, a real uvicorn server, and a real
headless Chromium that uploads a submission through the page, starts the run from the
organizer page and finds the new attack on the leaderboard and in the heatmap."""

import io
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

import web_server
from arena.db import transaction
from arena.execution.run import run
from arena.intake.archive import pack
from arena.results.scoring import Standings
from arena.web.app import create_app
from conftest import SAMPLES, make_settings, wait_until
from factories import submit_folder, synth_dataset, variant
from web_server import live_server

pytestmark = pytest.mark.docker
ORGANIZER = "organizer-secret"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def site(engine, tmp_path_factory):
    """A finished tournament (noop and step_to_target against decoder, eps 2 and 8) being served."""
    tmp = tmp_path_factory.mktemp("web")
    settings = make_settings(tmp / "arena", organizer_token=ORGANIZER, epsilons=[2, 8])
    synth_dataset(settings, 20, batch_size=10)
    for name in ("noop", "step_to_target", "decoder"):
        assert submit_folder(settings, SAMPLES / name, tmp).status.value == "accepted"
    assert not run(settings).platform_errors
    app = create_app(settings)
    with live_server(app) as url:
        yield settings, app, url, tmp


def _standings(settings) -> Standings:
    with transaction(settings) as session:
        from arena.data.dataset import find_dataset

        return Standings.compute(session, find_dataset(session, None))


def test_the_api_serves_the_tournament_as_scored(site):
    settings, _, url, _ = site
    standings = _standings(settings)
    _site_shows_every_attack(settings, url)
    matrix = web_server.get(f"{url}/api/matrix").json()
    expected = standings.matrix("error")
    assert matrix["attacks"] and matrix["defenses"] == ["decoder"]
    for i, attack in enumerate(matrix["attacks"]):
        assert matrix["counts"][i][0] == expected.loc[attack, "decoder"]
        assert matrix["answered"][i][0] == 20 * 2  # 20 images at 2 epsilons
    board = web_server.get(f"{url}/api/leaderboards/defense").json()
    assert board[0]["submission"] == "decoder" and board[0]["completion"] == 1.0
    assert board[0]["score"] == standings.defense_leaderboard().loc[0, "score"]
    assert board[0]["median_seconds_per_100"] > 0
    csv = web_server.get(f"{url}/api/export/error_matrix.csv?eps=8").text
    assert csv.splitlines()[0] == "attack,decoder"


def test_the_drill_down_shows_the_images_and_every_answer(site):
    _, _, url, _ = site
    headers = {"Authorization": f"Bearer {ORGANIZER}"}
    with web_server.client(url, headers=headers) as client:
        names = {s["name"]: s["id"] for s in client.get("/api/submissions").json()}
        row = client.get(f"/api/results?attack_id={names['noop']}&eps=8&limit=1").json()[0]
        detail = client.get(f"/api/adversarial/{row['adversarial_image_id']}").json()
        assert detail["attack"] == "noop" and [a["defense"] for a in detail["answers"]] == ["decoder"]
        assert detail["answers"][0]["correct"] is True  # the noop attack leaves the picture readable
        clean = _pixels(client.get(f"/api/images/{detail['image_id']}/image.png").content)
        adversarial = _pixels(client.get(f"/api/adversarial/{detail['id']}/image.png").content)
        perturbation = _pixels(client.get(f"/api/adversarial/{detail['id']}/perturbation.png").content)
        assert clean.shape == (299, 299, 3) and np.array_equal(clean, adversarial)
        assert np.all(perturbation == 128)  # no change is mid-grey
        page = client.get(f"/adversarial/{detail['id']}").text
        assert "decoder" in page and "correct" in page
    assert web_server.get(f"{url}/api/adversarial/{detail['id']}").status_code == 401


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("ARENA_REQUIRE_DOCKER"):
            pytest.fail("chromium is not installed (scripts/setup.sh installs it)")
        pytest.skip("needs chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _log_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#token", token)
    page.click("form.stack button")
    page.wait_for_url(f"{url}/")


def test_a_team_uploads_in_the_browser_and_the_organizer_runs_it(site, browser, tmp_path):
    _, _, url, _ = site
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(120_000)

    _log_in(page, url, ORGANIZER)
    page.goto(f"{url}/organizer")
    page.fill("input[name=team]", "browser-team")
    page.check("input[name=create]")  # a new team: without the tick, an unknown name is refused
    page.click("text=Issue a token")
    token = page.inner_text("#token").strip()

    page.context.clear_cookies()
    _log_in(page, url, token)
    page.goto(f"{url}/upload")
    page.set_input_files("input[name=archive]", str(pack(SAMPLES / "random_noise", tmp_path / "random_noise.tar.gz")))
    page.click("#upload-form button")
    page.wait_for_url(f"{url}/submissions/*")  # answered at once: stored, queued for its dry run
    assert page.inner_text("h2").split()[-1] in ("queued", "checking", "accepted")

    def accepted() -> bool:  # the page refreshes itself while queued; reloading here looks sooner
        page.reload()
        return "accepted" in page.inner_text("h2")

    wait_until(accepted, 120, "the web's checker to accept the upload", every=1)
    assert "browser-team" in page.inner_text("dl.facts")

    page.context.clear_cookies()
    _log_in(page, url, ORGANIZER)
    page.goto(f"{url}/organizer")
    page.click("#run-button")
    page.goto(f"{url}/")
    # The page is not reloaded: live progress refreshes the leaderboards when jobs finish.
    page.wait_for_function(
        """() => {
            const text = document.querySelector('#progress .text').textContent;
            const m = text.match(/^(\\d+) of (\\d+) jobs done$/);
            const row = [...document.querySelectorAll('#board-attack tbody tr')]
                .find((r) => r.textContent.includes('random_noise'));
            return m && m[1] === m[2] && row && row.textContent.includes('100%');
        }""",
        timeout=300_000,
    )
    attack_board = page.inner_text("#board-attack")
    assert "random_noise" in attack_board and "noop" in attack_board
    page.screenshot(path=str(tmp_path / "leaderboards.png"))

    page.goto(f"{url}/matrix")
    rows = page.locator("#heatmap th.row a").all_inner_texts()
    assert "random_noise" in rows
    tags = dict(zip(rows, page.locator("#heatmap th.row .tag").all_inner_texts(), strict=True))
    # every row is tagged; the keyboard test may have added an attack of its own to the shared site
    assert {"noop": "untargeted", "random_noise": "untargeted", "step_to_target": "targeted"}.items() <= tags.items()
    cell = page.locator("#heatmap td[data-attack=random_noise][data-defense=decoder]")
    assert "random_noise vs decoder" in cell.get_attribute("title")

    def every_answer_shown() -> bool:  # a request may be served the snapshot a refresh is replacing
        page.goto(f"{url}/matrix")
        return " of 40 answers" in cell.get_attribute("title")

    wait_until(every_answer_shown, 60, "the matrix with all 40 answers of random_noise on decoder", every=1)


def test_the_browser_draws_each_interval_with_its_figure(site, browser):
    """On the leaderboard, each figure's interval is drawn under it, as the API gives it; on the
    curves page, each defense's line runs inside its band, whose points say the API's bounds."""
    _, _, url, _ = site
    decoder = next(r for r in web_server.get(f"{url}/api/leaderboards/defense").json() if r["submission"] == "decoder")
    bands = web_server.get(f"{url}/api/curves/bands").json()["decoder"]
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{url}/")
    page.click("#worst-defense summary")  # the worst case is folded under the board (it made it too wide)
    for board, column, key in (("#board-defense-worst", "worst case", "worst_case"),
                               ("#board-defense", "normalized", "normalized"), ("#board-defense", "ε=8", "eps=8")):
        drawn = page.evaluate("""([board, column, name]) => {
            const table = document.querySelector(board);
            const label = (c) => (c.querySelector('button.sort') ?? c).textContent.trim();  // without the "?" link
            const at = [...table.tHead.rows[0].cells].findIndex((c) => label(c) === column);
            const row = [...table.tBodies[0].rows].find((r) => r.cells[1].textContent.trim() === name);
            const cell = row.cells[at], interval = cell.querySelector('small.ci');
            const box = interval.getBoundingClientRect(), outer = cell.getBoundingClientRect();
            return {text: interval.textContent, value: cell.firstChild.textContent.trim(), height: box.height,
                    inside: box.top >= outer.top && box.bottom <= outer.bottom, under: box.top > outer.top + 4};
        }""", [board, column, "decoder"])
        assert drawn["value"] == f"{decoder[key]:.3f}" and drawn["text"] == f"{decoder[key + '_low']:.3f}–{decoder[key + '_high']:.3f}"
        assert drawn["height"] > 0 and drawn["inside"] and drawn["under"], (column, drawn)
    assert decoder["worst_case_low"] < decoder["worst_case_high"]  # a band with some width to draw

    page.goto(f"{url}/curves")
    band = page.locator("#curves polygon.band").first
    box = band.bounding_box()
    assert box["height"] > 0 and box["width"] > 0
    dots = page.locator("#curves circle")
    assert dots.count() == len(bands)
    for i in range(dots.count()):
        dot = dots.nth(i).bounding_box()
        assert box["y"] <= dot["y"] + dot["height"] / 2 <= box["y"] + box["height"]  # the line runs inside its band
        title = dots.nth(i).locator("title").text_content()
        eps = title.split("at eps=")[1].split(" ")[0]
        assert f"95% interval {bands[eps]['low']:.1f}–{bands[eps]['high']:.1f}%" in title
    heights = page.evaluate("""() => {
        const points = document.querySelector('#curves polygon.band').points;
        return [...points].map((p) => p.y);
    }""")
    top, bottom = 12, 320 - 36  # the chart's plotting area (web/charts.py): 100% at the top, 0% at the bottom
    percent = sorted(round(100 - (y - top) / (bottom - top) * 100, 1) for y in heights)
    expected = sorted(round(bands[e][side], 1) for e in bands for side in ("low", "high"))
    assert percent == pytest.approx(expected, abs=0.2)
    page.context.close()


def _site_shows_every_attack(settings, url: str) -> int:
    """Wait until the site's matrix has a row per accepted attack (one team each on this
    site), and return how many: the site shows a change within its cache's recheck delay, and
    an earlier test of this module may have added an attack a moment ago (waiting for that
    state, never for a moment)."""
    from sqlalchemy import func, select

    from arena.models import Submission, SubmissionKind, SubmissionStatus

    with transaction(settings) as session:
        attacks = session.scalar(select(func.count(Submission.id)).where(
            Submission.status == SubmissionStatus.ACCEPTED,
            Submission.kind.in_([SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK])))
    wait_until(lambda: len(web_server.get(f"{url}/api/matrix").json()["attacks"]) == attacks, 30,
               "the site's matrix to show every accepted attack")
    return attacks


@pytest.mark.parametrize("eps", ["all", "8"])
def test_the_matrix_form_with_blank_and_filled_fields_shows_the_matrix(site, browser, eps):
    settings, _, url, _ = site
    attacks = _site_shows_every_attack(settings, url)
    page = browser.new_page()
    for top_attacks, top_defenses in [("", ""), ("1", ""), ("", "1"), ("2", "1")]:
        page.goto(f"{url}/matrix")
        page.select_option("select[name=eps]", label=eps)
        page.fill("input[name=top_attacks]", top_attacks)
        page.fill("input[name=top_defenses]", top_defenses)
        with page.expect_navigation() as navigation:
            page.click("form.controls button")
        assert navigation.value.status == 200, (eps, top_attacks, top_defenses, page.content()[:500])
        rows = page.locator("#heatmap th.row").count()
        assert rows == (int(top_attacks) if top_attacks else attacks)
        corner = page.get_attribute("#heatmap th.corner", "title")
        assert ("±8/255" in corner) if eps == "8" else ("every ε" in corner)
    page.close()


def _offline_page(browser, url: str):
    """A page that can reach the local server and nothing else: any other request is aborted."""
    context = browser.new_context()
    blocked: list[str] = []

    def route(r):
        if r.request.url.startswith(url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context.new_page(), blocked


def test_the_api_docs_render_without_internet(site, browser):
    _, _, url, _ = site
    page, blocked = _offline_page(browser, url)
    page.goto(f"{url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/matrix" in operations and "/api/leaderboards/{track}" in operations
    page.goto(f"{url}/redoc")
    page.wait_for_selector(".redoc-wrap", timeout=30_000)
    assert "/api/matrix" in page.content() and "Attack-defense tournaments" in page.inner_text("body")
    # Nothing else was asked of another host: only ReDoc's "powered by" logo, which the page does without.
    assert all(u.endswith("/logo-mini.svg") for u in blocked), blocked
    page.goto(f"{url}/")
    page.click("footer >> text=REST API")
    page.wait_for_selector(".opblock", timeout=30_000)
    page.context.close()


def test_the_leaderboard_headers_explain_themselves(site, browser):
    _, _, url, _ = site
    page = browser.new_page()
    page.goto(f"{url}/")
    assert "normalized" in page.inner_text("main") and "normalised" not in page.content()
    headers = page.locator("#board-defense th")
    titles = {headers.nth(i).locator("button.sort").inner_text().strip(): headers.nth(i).get_attribute("title")
              for i in range(headers.count())}
    for column in ("score", "normalized", "ε=2", "ε=8", "clean accuracy", "completion", "median s / 100 images"):
        assert titles[column], column
    assert "cells scored so far" in titles["normalized"]
    assert "0 to 1" in titles["ε=8"] and "0–255" in titles["ε=8"]
    page.click("section:has(#board-defense) .notes-box summary")  # folded, once per board
    notes = page.inner_text("#notes-defense")
    assert "normalized" in notes and "ε=16 means ±16/255" in notes and "completion" in notes
    page.click("#board-defense th >> nth=3 >> a.explain")  # "?" beside score: what it means
    page.wait_for_url(f"{url}/evaluation#score")
    assert "one point per adversarial image it labels correctly" in page.inner_text("#evaluation")
    page.close()


def test_a_fresh_site_shows_how_to_begin(browser, tmp_path):
    settings = make_settings(tmp_path / "fresh")
    with live_server(create_app(settings)) as url:
        page, blocked = _offline_page(browser, url)
        response = page.goto(f"{url}/")
        assert response.status == 200
        text = page.inner_text("#main")
        for command in ("arena db upgrade", "arena dataset import", "arena submit", "arena run"):
            assert command in text
        page.click("#main >> text=submission format")
        assert "metadata.json" in page.inner_text("#help")
        page.context.close()


def test_a_rerun_in_the_browser_asks_first_cancel_keeps_confirm_forgets(browser, tmp_path, monkeypatch):
    """A scored tournament of its own (a fake defense, as in tests/test_web_confirm.py) and a
    runner that only forgets, as the real one does before it runs, so no container is needed."""
    from test_web_actions import FakeRunner
    from test_web_confirm import _answers, scored_tournament

    settings, ids = scored_tournament(tmp_path, monkeypatch)
    app = create_app(settings)
    app.state.runner = FakeRunner()
    answers = _answers(settings, ids["D"])
    with live_server(app) as url:
        page = browser.new_page()
        _log_in(page, url, ORGANIZER)
        page.goto(f"{url}/submissions/{ids['D']}")
        page.click("text=Re-run its jobs")
        page.wait_for_selector("#confirm-heading")
        assert page.inner_text("#confirm-heading") == "Re-run D?"
        assert f"This forgets {answers} results of D" in page.inner_text("#losses")
        page.click("#cancel")
        page.wait_for_url(f"{url}/submissions/{ids['D']}?dataset=synthetic")
        assert _answers(settings, ids["D"]) == answers and app.state.runner.started == []

        page.click("text=Re-run its jobs")
        page.click("#confirm")
        page.wait_for_url(f"{url}/submissions/{ids['D']}?dataset=synthetic")
        assert _answers(settings, ids["D"]) == 0 and app.state.runner.started == ["synthetic"]
        page.close()


def test_the_browser_keeps_a_session_id_not_the_token_and_the_pages_keep_to_their_policy(site, browser):
    """The cookie Chromium keeps is an HttpOnly, SameSite=Strict session id; every page runs
    under its Content-Security-Policy with nothing refused (script from /static, heatmap
    colours in style attributes); after logging out the same id stands for nobody."""
    _, _, url, _ = site
    context = browser.new_context()
    page = context.new_page()
    page.add_init_script("""window.__refused = [];
        document.addEventListener('securitypolicyviolation', (e) => window.__refused.push(e.violatedDirective));""")
    refused_in_console = []
    page.on("console", lambda m: "Content Security Policy" in m.text and refused_in_console.append(m.text))

    _log_in(page, url, ORGANIZER)
    [cookie] = context.cookies()
    assert cookie["name"] == "arena_session" and ORGANIZER not in cookie["value"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http here
    assert page.evaluate("document.cookie") == ""

    for path in ("/", "/matrix", "/curves", "/submissions", "/organizer"):
        response = page.goto(f"{url}{path}")
        assert response.status == 200 and "frame-ancestors 'none'" in response.headers["content-security-policy"]
        page.wait_for_function("() => !document.querySelector('#progress .text') || "
                               "document.querySelector('#progress .text').textContent !== '…'")  # arena.js ran
        assert page.evaluate("window.__refused") == [], path
    page.goto(f"{url}/matrix")
    colour = page.eval_on_selector("#heatmap td[data-defense=decoder]", "td => getComputedStyle(td).backgroundColor")
    assert colour not in ("", "rgba(0, 0, 0, 0)")  # the style attribute is allowed
    assert refused_in_console == []

    page.click("header form button")  # log out
    page.wait_for_url(f"{url}/")
    assert context.cookies() == []
    context.add_cookies([cookie])  # the id copied before logging out
    # the logout's transaction may commit just after its redirect is sent: a short deadline, not a retry loop
    wait_until(lambda: page.goto(f"{url}/organizer").status == 401, 10, "the copied session id refused", every=0.5)
    context.close()


def _pages_by_role(settings, url: str) -> dict[str, tuple[str | None, list[str]]]:
    """Every page of the site, for each kind of reader: its token (None: anonymous) and paths."""
    from arena.admin.teams import issue_token

    with transaction(settings) as session:
        team_token = issue_token(session, "team-noop")
    headers = {"Authorization": f"Bearer {ORGANIZER}"}
    names = {s["name"]: s["id"] for s in web_server.get(f"{url}/api/submissions", headers=headers).json()}
    row = web_server.get(f"{url}/api/results?attack_id={names['step_to_target']}&eps=8&limit=1", headers=headers).json()[0]
    public = ["/", "/matrix", "/matrix?eps=8&value=hit", "/curves", "/submissions", f"/submissions/{names['noop']}",
              f"/submissions/{names['decoder']}", "/help/submissions", "/help/format", "/competition", "/rules", "/rounds",
              "/evaluation", "/data", "/teams/team-noop", "/register", "/login"]
    return {
        "anonymous": (None, public),
        "team": (team_token, [*public, "/upload"]),
        "organizer": (ORGANIZER, [*public, "/upload", "/organizer", f"/adversarial/{row['adversarial_image_id']}",
                                  f"/results?attack_id={names['step_to_target']}&defense_id={names['decoder']}&eps=8"]),
    }


def _open_as(browser, url: str, token: str | None, **context):
    page = browser.new_context(**context).new_page()
    if token is not None:
        _log_in(page, url, token)
    return page


def _wait_for_scripts(page) -> None:
    page.wait_for_function("() => !document.querySelector('#progress .text') || "
                           "document.querySelector('#progress .text').textContent !== '…'")


#: Words with a period that ends no sentence, as the pages write them.
ABBREVIATIONS = {"e.g", "i.e", "etc", "vs", "cf"}


def _reading(page) -> dict:
    """The page's headings (h1-h3) and its visible text as a reader meets it: every folded
    section opened; code blocks, screen-reader-only words and scripts left out, and each
    inline code element (a command, a file name) as one capitalised word."""
    return page.evaluate("""() => {
        document.querySelectorAll('details').forEach((d) => { d.open = true; });
        const headings = [...document.querySelectorAll('h1, h2, h3')].filter((h) => h.checkVisibility())
            .map((h) => h.innerText.replace(/\\s+/g, ' ').trim());
        document.querySelectorAll('pre, script, style, textarea, .visually-hidden').forEach((e) => e.remove());
        // a command or file name may begin a sentence as it is spelled ("arena run does ..."): a word stands for it
        document.querySelectorAll('code, kbd, samp').forEach((e) => e.replaceWith('Code'));
        return {headings, text: document.body.innerText};
    }""")


def _lowercase_after_a_period(text: str) -> list[str]:
    """Each place where a sentence goes on in lower case after a period ("done. the next"),
    with its context: a period before a space, on one line (table cells are apart by tabs,
    blocks by new lines), not after an abbreviation; numbers (0.5) and file names
    (result.csv) have no space after their period."""
    found = []
    for match in re.finditer(r"(\S+)\.[ \u00a0]+[a-z]", text):
        if match.group(1).lstrip("([“\"'").lower() not in ABBREVIATIONS:
            found.append(text[max(0, match.start() - 30):match.end() + 30])
    return found


def _reads_well(page, path: str) -> None:
    """Issue 30, finding 14: no heading repeated on a page, no sentence begun in lower case."""
    reading = _reading(page)
    repeated = {h for h in reading["headings"] if reading["headings"].count(h) > 1}
    assert not repeated, (path, repeated)
    assert _lowercase_after_a_period(reading["text"]) == [], path


def test_the_sentence_check_finds_lowercase_after_a_period_and_nothing_else():
    text = "Done. the next. Uploads close at 12:00 UTC.\tyes\nresult.csv holds 0.5 (e.g. noop). Fine. ok"
    found = _lowercase_after_a_period(text)
    assert len(found) == 2 and "Done. t" in found[0] and "Fine. o" in found[1], found


@pytest.mark.parametrize("role", ["anonymous", "team", "organizer"])
def test_on_a_phone_nothing_runs_off_the_screen(site, browser, role):
    """375 px wide: the page never scrolls sideways (wide tables scroll in their own box), every
    navigation link is on screen, and the ε-curve chart shrinks to fit, ε=8 included. Every
    page also reads well (``_reads_well``): checked here, where each reader visits each page."""
    settings, _, url, _ = site
    token, paths = _pages_by_role(settings, url)[role]
    page = _open_as(browser, url, token, viewport={"width": 375, "height": 740})
    for path in paths:
        assert page.goto(f"{url}{path}").status == 200, path
        _wait_for_scripts(page)
        width = page.evaluate("document.documentElement.clientWidth")
        assert width == 375
        assert page.evaluate("document.documentElement.scrollWidth") <= width, path
        links = page.locator("header nav a, header .who a, header .who button")
        expected = {"Leaderboards", "Error matrix", "ε curves", "Submissions"}
        expected |= {"Log in"} if token is None else {"Upload", "Log out"}
        assert expected <= set(links.all_inner_texts()), (path, links.all_inner_texts())
        for i in range(links.count()):
            link = links.nth(i)
            box = link.bounding_box()
            assert link.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= width, (path, link.inner_text(), box)
        if path == "/curves":
            chart = page.locator("#curves").bounding_box()
            assert chart["x"] + chart["width"] <= width
            ticks = page.locator("#curves text", has_text="ε=8")
            tick = ticks.bounding_box()
            assert ticks.is_visible() and tick["x"] + tick["width"] <= width
        _reads_well(page, path)  # last: it opens folded sections and takes code out of the page
    if token is None:
        page.click("header >> text=Log in")
        page.wait_for_url(f"{url}/login")
    page.context.close()


@pytest.mark.parametrize("role", ["anonymous", "team", "organizer"])
def test_axe_finds_no_serious_accessibility_violation(site, browser, role):
    """axe-core (the copy shipped by axe-playwright-python, no network) on every page this reader can see."""
    from axe_playwright_python.sync_playwright import Axe

    settings, _, url, _ = site
    token, paths = _pages_by_role(settings, url)[role]
    axe = Axe()
    for viewport in ({"width": 1280, "height": 900}, {"width": 375, "height": 740}):
        page = _open_as(browser, url, token, viewport=viewport)
        for path in paths:
            assert page.goto(f"{url}{path}").status == 200, path
            _wait_for_scripts(page)
            violations = axe.run(page).response["violations"]
            serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in violations
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], (role, viewport["width"], path, serious)
        page.context.close()


def test_a_leaderboard_sorts_from_the_keyboard(site, browser):
    """Tab reaches a column header, Enter sorts by it (ascending, then descending), and the
    header's aria-sort follows; Space sorts by the next one, which takes the aria-sort over."""
    settings, _, url, tmp = site
    if len(web_server.get(f"{url}/api/leaderboards/attack").json()) < 2:  # a second attack, so there is an order
        assert submit_folder(settings, variant(SAMPLES / "noop", tmp, "quiet_noop"), tmp,
                             name="quiet_noop").status.value == "accepted"
        assert not run(settings).platform_errors
    page = browser.new_page()
    page.goto(f"{url}/")
    _wait_for_scripts(page)
    board = "#board-attack"
    headers = page.locator(f"{board} thead th")

    def names() -> list[str]:
        return page.locator(f"{board} tbody tr td:nth-child(2)").all_inner_texts()

    before = names()
    assert len(before) >= 2
    page.focus("#board-attack-csv")  # the last of the attack board's CSV links, just above it
    for _ in range(3):  # the rank header, its "?" link to the explanation, then the submission header
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('th')?.textContent.trim()") == "submission"
    assert page.evaluate("document.activeElement.closest('table').id") == "board-attack"
    assert headers.nth(1).get_attribute("aria-sort") is None
    page.keyboard.press("Enter")
    assert headers.nth(1).get_attribute("aria-sort") == "ascending"
    ascending = names()
    assert ascending == sorted(before, key=str.lower)
    page.keyboard.press("Enter")
    assert headers.nth(1).get_attribute("aria-sort") == "descending"
    assert names() == ascending[::-1] != ascending  # the rows moved
    page.keyboard.press("Tab")  # the team header
    page.keyboard.press(" ")
    assert headers.nth(1).get_attribute("aria-sort") is None
    assert headers.nth(2).get_attribute("aria-sort") == "ascending"
    page.close()


def test_a_page_left_open_counts_down_to_the_close_by_the_second(browser, tmp_path):
    """The time left was minute-grained, stood still in the last minute, and a page left open
    said "1 min left" after the close. Now the browser counts it again every second."""
    from datetime import timedelta

    from arena.competition import rounds
    from arena.models import utcnow

    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    synth_dataset(settings, 2, batch_size=2)
    with transaction(settings) as session:
        rounds.update(rounds.find(session, "synthetic"), closes_at=utcnow() + timedelta(seconds=8))
    with live_server(create_app(settings)) as url:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"{url}/rounds")
        first = page.inner_text("#rounds time.countdown")
        assert first.startswith("(0 min ") and first.endswith(" s left)"), first
        page.wait_for_function("(first) => document.querySelector('#rounds time.countdown').textContent !== first",
                               arg=first, timeout=20_000)  # it ticks without a reload
        page.wait_for_function("() => document.querySelector('#rounds time.countdown').textContent === '(closed now)'",
                               timeout=30_000)
        page.close()


def test_a_token_page_has_the_site_s_header_and_copies_the_token(browser, tmp_path):
    """The token page (shown once) had no header and no way to copy but selecting by hand."""
    settings = make_settings(tmp_path / "arena", organizer_token=ORGANIZER)
    synth_dataset(settings, 2, batch_size=2)
    with live_server(create_app(settings)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900},
                                      permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        _log_in(page, url, ORGANIZER)
        page.goto(f"{url}/organizer")
        page.fill("input[name=team]", "copy-team")
        page.check("input[name=create]")
        page.click("text=Issue a token")
        assert "organizer" in page.inner_text("header .who") and page.locator("header nav").count() == 1
        page.click("#copy-token")
        page.wait_for_selector("#copied", state="visible", timeout=10_000)
        assert page.evaluate("navigator.clipboard.readText()") == page.inner_text("#token").strip()
        context.close()
