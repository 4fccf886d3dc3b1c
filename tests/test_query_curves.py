"""The query track's epsilon curves (docs/query-track.md, "The epsilon curves"): each served
defense's share of the query attacks' outputs, clipped to each epsilon, that it labelled
wrongly, with its 95% interval, from the rows test_query_matrix stores (2 query attacks x 2
served defenses x 4 images, T x D2 never ran); against values worked out by hand, through
/api/curves?track=query and the /curves page, hidden with their round, and drawn by Chromium."""

from fastapi.testclient import TestClient

from arena.competition import rounds
from arena.db import transaction
from arena.models import Visibility
from arena.results.query_scoring import defense_errors, judged, results_frame
from arena.web.app import create_app
from conftest import make_settings
from factories import synth_dataset
from test_query_matrix import ORGANIZER, arena  # noqa: F401 - the stored query results
from test_web_tournament import browser  # noqa: F401 - the Chromium fixture
from web_server import live_server

# By hand, from test_query_matrix.CELLS: a defense's output is wrong at eps E when its label
# there is not the true one (the cell's label from its smallest eps on; the true one below).
# D1: A's (wrong from 4, wrong from 16, true, wrong from 2) and T's (target from 2, wrong from
# 2, target from 16, target from 4): wrong 1 + 2 = 3 of 8 at eps 2, 2 + 3 = 5 at 4 and 8, 3 + 4
# = 7 at 16. T's wrong label at eps 2 is no success of T (it missed its target) but a miss of D1.
# D2: A's (wrong from 8, true, true, wrong from 16): 0, 0, 1 and 2 of 4.
WRONG = {"D1": {2: 3, 4: 5, 8: 5, 16: 7}, "D2": {2: 0, 4: 0, 8: 1, 16: 2}}
CURVES = {"D1": {2: 37.5, 4: 62.5, 8: 62.5, 16: 87.5}, "D2": {2: 0.0, 4: 0.0, 8: 25.0, 16: 50.0}}
# The intervals, the exact bootstrap of k wrong of n: the 2.5% and 97.5% quantiles (the smallest
# k reaching them) of Binomial(n, k/n). 3 of 8: P(0) = 0.625^8 = 0.023 < 0.025, so 1; P(K >= 7)
# = 0.0056 and P(K >= 6) = 0.036 > 0.025, so 6: 12.5-75%. 5 of 8 is its mirror: 2 to 7. 7 of 8:
# P(K <= 4) = 0.011, P(K <= 5) = 0.067, so 5; P(8) = 0.34, so 8: 62.5-100%. 1 of 4: P(0) = 0.32,
# so 0; P(K <= 2) = 0.949, P(K <= 3) = 0.996, so 3: 0-75%. 2 of 4: P(0) = P(4) = 1/16 > 0.025:
# 0-100%. 0 of 4: 0-0.
BANDS = {"D1": {2: (12.5, 75.0), 4: (25.0, 87.5), 8: (25.0, 87.5), 16: (62.5, 100.0)},
         "D2": {2: (0.0, 0.0), 4: (0.0, 0.0), 8: (0.0, 75.0), 16: (0.0, 100.0)}}


def _bands(name: str) -> dict[str, dict]:
    """As the API's JSON has them: epsilons as strings."""
    return {str(e): {"rate": CURVES[name][e], "low": low, "high": high} for e, (low, high) in BANDS[name].items()}


def test_the_wrong_labels_per_defense_from_stored_rows_are_the_hand_counted_ones(arena):  # noqa: F811
    settings, _, _ = arena
    with transaction(settings) as session:
        round_ = rounds.find(session)
        cells = judged(results_frame(session, round_), list(round_.epsilons))
    wrong, scored = defense_errors(cells, [2, 4, 8, 16])
    assert wrong.to_dict("index") == WRONG and scored.to_dict() == {"D1": 8, "D2": 4}


def test_the_api_serves_the_query_curves_with_the_batch_curves_shapes(arena):  # noqa: F811
    _, client, _ = arena
    assert client.get("/api/curves?track=query").json() == {n: {str(e): r for e, r in c.items()} for n, c in CURVES.items()}
    assert client.get("/api/curves/bands?track=query").json() == {"D1": _bands("D1"), "D2": _bands("D2")}
    assert client.get("/api/curves/bands?track=query&defense=D2").json() == {"D2": _bands("D2")}
    assert client.get("/api/curves").json() == {}  # the batch tracks ran nothing here: the default is theirs
    missing = client.get("/api/curves?track=query&defense=A")
    assert missing.status_code == 404 and "A" in missing.json()["detail"]
    assert client.get("/api/curves?track=both").status_code == 422


def test_the_page_draws_a_line_per_served_defense_under_its_track_switch(arena):  # noqa: F811
    _, client, _ = arena
    page = client.get("/curves?track=query").text
    assert 'aria-current="page">query' in page and 'href="/curves?dataset=synthetic">batch</a>' in page
    assert page.count('class="band"') == 2 and '<input type="hidden" name="track" value="query">' in page
    assert "D1: 87.5% at eps=16 (95% interval 62.5–100.0%)" in page and "over all query attacks" in page
    assert "even where a targeted attack missed" in page  # the notes say what the query curve counts
    one = client.get("/curves?track=query&defense=D2").text
    assert one.count('class="band"') == 1 and "D2: 25.0% at eps=8 (95% interval 0.0–75.0%)" in one
    batch = client.get("/curves").text
    assert 'href="/curves?dataset=synthetic&amp;track=query">query</a>' in batch  # the round ran the query track
    assert "no defense results yet" in batch


def test_a_round_without_query_results_shows_no_switch(tmp_path):
    settings = make_settings(tmp_path / "arena")
    synth_dataset(settings, 4, batch_size=4)
    client = TestClient(create_app(settings))
    assert 'id="curves-tracks"' not in client.get("/curves").text
    assert client.get("/api/curves/bands?track=query").json() == {}
    assert "no query-track results yet" in client.get("/curves?track=query").text


def test_a_hidden_round_s_query_curves_are_for_organizers_only(arena):  # noqa: F811
    settings, client, token = arena
    with transaction(settings) as session:
        rounds.find(session).visibility = Visibility.HIDDEN
    client.app.state.standings.recheck()
    for headers in ({}, {"Authorization": f"Bearer {token}"}):
        for url in ("/api/curves?track=query", "/api/curves/bands?track=query"):
            assert client.get(url, headers=headers).status_code == 403, (url, headers)
        page = client.get("/curves?track=query", headers=headers).text
        assert "hidden until the organizers publish it" in page and 'class="band"' not in page
    assert client.get("/api/curves/bands?track=query", headers=ORGANIZER).json()["D1"] == _bands("D1")
    assert client.get("/curves?track=query", headers=ORGANIZER).text.count('class="band"') == 2


def test_chromium_draws_one_line_per_served_defense_in_its_band(arena, browser):  # noqa: F811
    _, client, _ = arena
    with live_server(client.app) as url:
        page = browser.new_page()
        page.goto(f"{url}/curves?track=query")
        lines = page.locator("#curves polyline")
        assert lines.count() == 2 and page.locator("#curves polygon.band").count() == 2
        assert page.locator("ul.key li").all_text_contents() == ["D1", "D2"]
        assert page.locator("#curves circle").count() == 8  # four epsilons a line
        titles = page.locator("#curves circle title").all_text_contents()
        assert "D2: 50.0% at eps=16 (95% interval 0.0–100.0%)" in titles
        page.uncheck("input[name=defense][value=D1]")
        page.click("form.controls button")
        page.wait_for_url("**defense=D2**")
        assert "track=query" in page.url and page.locator("#curves polyline").count() == 1
        assert page.locator("ul.key li").all_text_contents() == ["D2"]
        page.click("#curves-tracks a")  # back to the batch tracks, which ran nothing here
        page.wait_for_url(f"{url}/curves?dataset=synthetic")
        assert page.locator("#curves").count() == 0 and page.locator("p.empty").is_visible()
        page.close()
