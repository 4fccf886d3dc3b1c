"""The heatmap page drawn from the matrix JSON it carries, and the standings pages served
compressed from the snapshot (#16 part 3), on a scored tournament without containers (a
fake defense, as in tests/test_web_confirm.py): TestClient for what the server sends, a
real Chromium for what a visitor sees, with and without JavaScript.

Before: every cell was markup (a 100 x 100 matrix made a 2.5 MB page) and every page was
rendered per request, sent uncompressed."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import web_server
from arena.db import transaction
from arena.models import Submission, SubmissionKind
from arena.web import cache
from arena.web.app import create_app
from arena.web.cache import StandingsCache
from factories import add_submission, team_named
from test_web_confirm import TOKEN, scored_tournament
from test_web_tournament import _log_in, browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}
#: A name that would end the page's JSON block if it were written there as it is.
SCRIPT_NAME = "</script><b>x</b>"


@pytest.fixture
def tournament(tmp_path, monkeypatch):
    """The scored 2 x 2 tournament (attacks A and T, defenses D and E) with a third attack whose
    name holds markup; its app rechecks the results on every request."""
    settings, ids = scored_tournament(tmp_path, monkeypatch)
    with transaction(settings) as session:
        ids[SCRIPT_NAME] = add_submission(session, SCRIPT_NAME, SubmissionKind.ATTACK, owner="red").id
        for submission in session.scalars(select(Submission)):  # a team each: every one counts on the boards
            if submission.name != "A":
                submission.team = team_named(session, f"team-{submission.id}")
    app = create_app(settings)
    app.state.standings = StandingsCache(settings, recheck_seconds=0)
    return settings, ids, app


def _cells_json(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="heatmap-cells">(.*?)</script>', page, re.S).group(1)
    return json.loads(block)


@pytest.mark.parametrize("query", ["", "?eps=8&value=hit", "?top_attacks=1&top_defenses=1"])
def test_the_page_carries_the_matrix_json_of_its_view_and_no_markup_from_names(tournament, query):
    _, _, app = tournament
    client = TestClient(app)
    page = client.get(f"/matrix{query}").text
    cells = _cells_json(page)
    assert cells == client.get(f"/api/matrix{query}").json()
    assert page.count("</script>") == 2  # arena.js, and the data block's own end: the name's is escaped in it
    assert "<b>x</b>" not in page
    if SCRIPT_NAME in cells["attacks"]:
        assert "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in page  # its row header


def test_pages_and_json_are_sent_gzipped_and_the_same_without(tournament):
    """Cached (the standings and their pages) or not (the rest), anything of 1000 bytes or more
    goes gzipped to a client that accepts it, and the same bytes plain to one that does not."""
    _, ids, app = tournament
    with live_server(app) as url:
        for path in ("/", "/matrix", "/api/matrix", "/api/leaderboards/defense", "/submissions", "/static/arena.js",
                     f"/submissions/{ids['D']}", "/api/submissions", "/api/export/error_matrix.csv"):
            zipped = web_server.get(url + path, headers={"Accept-Encoding": "gzip"})
            plain = web_server.get(url + path, headers={"Accept-Encoding": "identity"})
            assert zipped.status_code == plain.status_code == 200, path
            assert zipped.content == plain.content and "content-encoding" not in plain.headers, path
            if len(plain.content) >= 1000:
                assert zipped.headers["content-encoding"] == "gzip", path
                assert int(zipped.headers["content-length"]) < len(plain.content) / 2, path
                assert "Accept-Encoding" in zipped.headers["vary"], path
            else:
                assert "content-encoding" not in zipped.headers, path
        assert len(web_server.get(f"{url}/matrix").content) >= 1000 and len(web_server.get(f"{url}/").content) >= 1000


def test_a_cached_page_is_the_reader_s_own(tournament):
    """One page per view and kind of reader: an organizer's cells link to the per-image results,
    a team's header names the team, the public's neither; a new title shows on the first page
    asked for once the standings are checked again (here on every request)."""
    settings, _, app = tournament
    public = TestClient(app)
    anonymous = public.get("/matrix").text
    organizer = TestClient(app)
    assert organizer.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    with transaction(settings) as session:
        from arena.admin import teams

        token = teams.issue_token(session, "blue")
    team = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    for _ in range(2):  # rendered, then served from the snapshot: the same for each reader
        assert "data-results=" not in public.get("/matrix").text
        assert 'data-results="/results?dataset=synthetic"' in organizer.get("/matrix").text
        assert "team blue" in team.get("/matrix").text and "team blue" not in public.get("/matrix").text
    assert 'href="/login?next=/matrix%3Feps%3D8"' in public.get("/matrix?eps=8").text
    assert public.patch("/api/tournament", json={"title": "Autumn Cup"}, headers=ORGANIZER).status_code == 200
    assert "Autumn Cup" in public.get("/matrix").text and "Autumn Cup" not in anonymous


def test_a_page_asked_for_after_the_cache_s_delay_shows_what_changed(tournament):
    """The API may serve its cached answer once more while it checks; a page checks first."""
    settings, _, app = tournament
    now = [0.0]
    app.state.standings = StandingsCache(settings, recheck_seconds=60, clock=lambda: now[0])
    client = TestClient(app)
    assert ">NEW</a>" not in client.get("/matrix").text and ">NEW</a>" not in client.get("/").text
    with transaction(settings) as session:
        add_submission(session, "NEW", SubmissionKind.ATTACK, owner="red")
    assert ">NEW</a>" not in client.get("/matrix").text  # within the delay: the snapshot, no query
    now[0] += 61  # past the cache's delay: the next page asked for checks the standings
    assert ">NEW</a>" in client.get("/matrix").text and ">NEW</a>" in client.get("/").text


def test_hidden_leaderboards_hide_the_cells_from_the_public_only(tournament):
    _, _, app = tournament
    client = TestClient(app)
    assert client.patch("/api/tournament", json={"leaderboards_public": False}, headers=ORGANIZER).status_code == 200
    hidden = client.get("/matrix").text
    assert "hidden until the end" in hidden and "heatmap-cells" not in hidden
    assert _cells_json(client.get("/matrix", headers=ORGANIZER).text)["attacks"]
    assert "hidden until the end" in client.get("/").text


def _cell_facts(page) -> list[dict]:
    return page.eval_on_selector_all("#heatmap td[data-attack]", """cells => cells.map((td) => ({
        attack: td.dataset.attack, defense: td.dataset.defense, title: td.title, text: td.textContent.trim(),
        colour: getComputedStyle(td).backgroundColor, link: td.querySelector('a')?.getAttribute('href') ?? null}))""")


@pytest.mark.parametrize("query", ["", "?eps=8&value=hit"])
def test_chromium_draws_every_cell_from_the_json_with_its_figures(tournament, browser, query):  # noqa: F811
    _, ids, app = tournament
    with live_server(app) as url:
        matrix = web_server.get(f"{url}/api/matrix{query}").json()
        page = browser.new_page()
        page.goto(f"{url}/matrix{query}")
        cells = _cell_facts(page)
        assert len(cells) == len(matrix["attacks"]) * len(matrix["defenses"]) == 3 * 2
        answered_somewhere = False
        for cell in cells:
            i, j = matrix["attacks"].index(cell["attack"]), matrix["defenses"].index(cell["defense"])
            count, answered = matrix["counts"][i][j], matrix["answered"][i][j]
            assert cell["title"].startswith(f"{cell['attack']} vs {cell['defense']}: {count} {matrix['value']} "
                                            f"of {answered} answers"), cell
            if answered:
                answered_somewhere = True
                low, high = (f"{100 * matrix[bound][i][j]:.1f}" for bound in ("low", "high"))
                assert cell["title"].endswith(f"({100 * count / answered:.1f}%, 95% interval {low}–{high}%)"), cell
                assert cell["text"] == f"{100 * count / answered:.0f}"
            else:  # the attack without jobs: no rate, grey
                assert cell["title"].endswith(" answers") and cell["text"] == "" and cell["colour"] == "rgb(238, 238, 238)"
            assert cell["link"] is None  # the public gets no per-image results
        assert answered_somewhere
        # the markup name is a name in the page, not markup
        assert page.locator("#heatmap th.row a", has_text=SCRIPT_NAME).count() == 1
        assert page.locator("#heatmap b").count() == 0
        page.close()


def test_chromium_organizer_cells_are_links_the_keyboard_reaches(tournament, browser):  # noqa: F811
    _, ids, app = tournament
    with live_server(app) as url:
        page = browser.new_page()
        _log_in(page, url, TOKEN)
        page.goto(f"{url}/matrix?eps=8")
        link = page.locator("#heatmap td[data-attack=A][data-defense=D] a")
        assert link.get_attribute("href") == f"/results?dataset=synthetic&eps=8&attack_id={ids['A']}&defense_id={ids['D']}"
        page.focus("#heatmap th.row a >> text=A")
        page.keyboard.press("Tab")  # the row's first cell
        assert page.evaluate("document.activeElement.closest('td')?.dataset.defense") == page.evaluate(
            "document.querySelector('#heatmap th.col').textContent.trim()")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{url}/results?*")
        assert f"attack_id={ids['A']}" in page.url
        page.close()


def test_chromium_shows_what_the_cell_data_says_even_fields_the_page_did_not_know(tournament, browser):  # noqa: F811
    """The cells are the JSON's: served a page whose JSON has other counts and one more per-cell
    field, and whose title template names it, Chromium shows those, with no change to arena.js."""
    _, _, app = tournament
    with live_server(app) as url:
        original = web_server.get(f"{url}/matrix").text
        data = _cells_json(original)
        data["counts"] = [[1] * len(data["defenses"]) for _ in data["attacks"]]
        data["answered"] = [[4] * len(data["defenses"]) for _ in data["attacks"]]
        data["interval"] = [[f"{i}-{j}" for j in range(len(data["defenses"]))] for i in range(len(data["attacks"]))]
        block = json.dumps(data).replace("<", "\\u003c")
        changed = re.sub(r'(id="heatmap-cells">).*?(</script>)', lambda m: m.group(1) + block + m.group(2), original,
                         flags=re.S).replace("answers[ ({rate}%, 95% interval {low_pct}–{high_pct}%)]", "answers[ ({rate}%)][, interval {interval}]")
        page = browser.new_page()
        page.route(f"{url}/matrix", lambda route: route.fulfill(status=200, content_type="text/html", body=changed))
        page.goto(f"{url}/matrix")
        cells = _cell_facts(page)
        assert len(cells) == len(data["attacks"]) * len(data["defenses"])
        for cell in cells:
            i, j = data["attacks"].index(cell["attack"]), data["defenses"].index(cell["defense"])
            assert cell["title"].endswith(f": 1 error of 4 answers (25.0%), interval {i}-{j}"), cell
            assert cell["text"] == "25" and cell["colour"] == "rgba(213, 94, 0, 0.25)"
        page.close()


def test_without_javascript_the_matrix_page_says_where_the_figures_are(tournament, browser):  # noqa: F811
    _, _, app = tournament
    with live_server(app) as url:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(f"{url}/matrix?eps=8")
        notice = page.locator("#heatmap-no-script")
        assert notice.is_visible() and "CSV" in notice.inner_text()
        assert page.locator("#heatmap td[data-attack]").count() == 0
        assert set(page.locator("#heatmap th.row a").all_inner_texts()) == {"A", "T", SCRIPT_NAME}
        csv = web_server.get(url + notice.locator("a", has_text="CSV").get_attribute("href"))
        assert csv.status_code == 200 and csv.text.splitlines()[0] == "attack,D,E"
        matrix = web_server.get(url + notice.locator("a", has_text="JSON").get_attribute("href")).json()
        assert matrix["epsilon"] == 8 and matrix["answered"]
        context.close()



def test_chromium_fits_the_defense_board_at_four_eps_on_a_1280_px_screen(tmp_path, monkeypatch, browser):  # noqa: F811
    """With four ε the defense board was 1,676 px wide (the worst case per ε beside the ε
    columns) and scrolled sideways at 1280 px; the worst case is folded under it now, still on
    the page, and the CSV keeps every column. On a phone the page itself still never scrolls."""
    settings, ids = scored_tournament(tmp_path, monkeypatch, epsilons=[2, 4, 8, 16])
    with transaction(settings) as session:  # names of the demo's length, as teams choose them
        for submission in session.scalars(select(Submission)):
            submission.name = {"A": "random_noise", "T": "step_to_target", "D": "smoothed_decoder"}.get(
                submission.name, "another_decoder")
            submission.team = team_named(session, f"team-{submission.name}")
    fits = """() => [...document.querySelectorAll('table[id^="board-"]')].map((t) => ({
        id: t.id, width: t.scrollWidth, box: t.parentElement.clientWidth}))"""
    with live_server(create_app(settings)) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/")
        assert page.locator("#board-defense th", has_text="ε=16").count() == 1
        assert page.locator("#board-defense-worst").is_hidden()  # folded ...
        page.click("#worst-defense summary")  # ... one click away
        assert page.locator("#board-defense-worst th", has_text="worst ε=16").is_visible()
        boards = page.evaluate(fits)
        assert {b["id"] for b in boards} == {"board-defense", "board-defense-worst", "board-attack", "board-targeted_attack"}
        assert all(b["width"] <= b["box"] for b in boards), boards
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        page.set_viewport_size({"width": 375, "height": 740})
        assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
        page.close()
        columns = web_server.get(f"{url}/api/export/robust_accuracy.csv").text.splitlines()[0].split(",")
        assert {f"worst_case_eps={eps}" for eps in (2, 4, 8, 16)} <= set(columns), columns


def test_freely_chosen_query_values_do_not_grow_the_cache(tournament, monkeypatch):
    """Each distinct ``top_attacks`` is a view of its own: past the cap it is answered, not kept."""
    _, _, app = tournament
    monkeypatch.setattr(cache, "MAX_VIEWS", 5)
    client = TestClient(app)
    for top in range(1, 12):
        matrix = client.get(f"/api/matrix?top_attacks={top}").json()
        assert len(matrix["attacks"]) == min(top, 3)
    snapshot = app.state.standings.get(None).snapshot
    assert len(snapshot._views) == 5
