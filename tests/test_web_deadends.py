"""No dead ends (#14 finding 7), without containers or a browser (TestClient), on the scored
tournament of tests/test_web_confirm.py (attacks A and T (targeted), defenses D and E, ε 2 and 8,
4 images: 32 answers on adversarial images).

Before: logging in from a 401 page landed on /; /results had "next" but no "previous" and no
total, "next" past the end was an empty table, it had no nav entry and no filter form; the
adversarial page showed a target class for an untargeted attack and said "fooled" where
/results says "error"."""

import re

import pytest
from fastapi.testclient import TestClient

from arena.web import pages
from arena.web.app import create_app
from test_web_confirm import TOKEN, scored_tournament

TOTAL = 32


@pytest.fixture
def settings_ids(tmp_path, monkeypatch):
    return scored_tournament(tmp_path, monkeypatch)


@pytest.fixture
def site(settings_ids):
    settings, ids = settings_ids
    client = TestClient(create_app(settings))
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    return client, ids


def _login_link(page: str) -> str:
    return re.search(r'<a href="(/login[^"]*)" id="login-back">', page).group(1).replace("&amp;", "&")


def test_logging_in_from_a_401_page_returns_to_it(settings_ids):
    settings, ids = settings_ids
    client = TestClient(create_app(settings))
    asked = f"/results?attack_id={ids['A']}&eps=8"
    refused = client.get(asked)
    assert refused.status_code == 401
    link = _login_link(refused.text)
    assert link == f"/login?next=/results%3Fattack_id%3D{ids['A']}%26eps%3D8"
    form = client.get(link).text
    back = re.search(r'<input type="hidden" name="next" value="([^"]*)">', form).group(1).replace("&amp;", "&")
    assert back == asked
    response = client.post("/login", data={"token": TOKEN, "next": back}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == asked
    assert client.get(response.headers["location"]).status_code == 200


@pytest.mark.parametrize("outside", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "evil.example",
                                     "/\x0d\x0aLocation: https://evil.example", "javascript:alert(1)", "/login", ""])
def test_an_outside_next_is_refused_for_the_home_page(settings_ids, outside):
    client = TestClient(create_app(settings_ids[0]))
    form = client.get("/login", params={"next": outside}).text
    assert 'name="next" value="/"' in form
    response = client.post("/login", data={"token": TOKEN, "next": outside}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"


def _pager(page: str) -> dict:
    return {rel: href.replace("&amp;", "&") for href, rel in re.findall(r'<a href="([^"]+)" rel="(prev|next)">', page)}


def _rows(page: str) -> int:
    return len(re.findall(r'<tr><td><a href="/adversarial/', page))


def test_results_show_the_total_and_previous_next_only_where_they_lead(site, monkeypatch):
    client, _ = site
    monkeypatch.setattr(pages, "RESULTS_PAGE", 10)
    first = client.get("/results").text
    assert "Results 1–10 of 32" in first and _rows(first) == 10
    assert _pager(first) == {"next": "/results?dataset=synthetic&offset=10"}
    middle = client.get("/results?offset=10").text
    assert "Results 11–20 of 32" in middle
    assert _pager(middle) == {"prev": "/results?dataset=synthetic", "next": "/results?dataset=synthetic&offset=20"}
    last = client.get("/results?offset=30").text
    assert "Results 31–32 of 32" in last and _rows(last) == 2
    assert _pager(last) == {"prev": "/results?dataset=synthetic&offset=20"}


@pytest.mark.parametrize("offset", [32, 35, 1000, 2**31 - 1])
def test_an_offset_past_the_end_shows_the_last_page(site, monkeypatch, offset):
    client, _ = site
    monkeypatch.setattr(pages, "RESULTS_PAGE", 10)
    page = client.get(f"/results?offset={offset}").text
    assert "Results 31–32 of 32" in page and _rows(page) == 2


def test_a_filter_with_no_results_says_so_and_links_back_instead_of_an_empty_table(site):
    client, ids = site
    page = client.get(f"/results?attack_id={ids['D']}&offset=100").text
    assert "<table" not in page and "No results of attack" in page
    assert '<a href="/results?dataset=synthetic">show every result</a>' in page


def test_the_nav_shows_results_to_organizers_only(site, settings_ids):
    client, _ = site
    assert '<a href="/results?dataset=synthetic">Results</a>' in client.get("/").text  # the page's round kept
    anonymous = TestClient(create_app(settings_ids[0]))
    assert ">Results</a>" not in anonymous.get("/").text


def test_the_filter_form_with_blank_fields_shows_everything_and_filled_ones_filter(site):
    client, ids = site
    page = client.get("/results").text
    form = re.search(r'<form method="get" action="/results" class="controls" id="results-filter">(.*?)</form>', page, re.S)
    names = re.findall(r'<select name="([^"]+)">', form.group(1))
    assert names == ["attack_id", "defense_id", "eps"]
    assert '<option value="">any</option>' in form.group(1)
    blank = client.get("/results?dataset=synthetic&attack_id=&defense_id=&eps=").text
    assert f"of {TOTAL}" in blank
    one = client.get(f"/results?dataset=synthetic&attack_id={ids['T']}&defense_id=&eps=8").text
    assert "Results 1–8 of 8 of attack <strong>T</strong> at &epsilon;=8." in one
    assert f'<option value="{ids["T"]}" selected>T</option>' in one and '<option value="8" selected>8</option>' in one
    both = client.get(f"/results?attack_id={ids['A']}&defense_id={ids['E']}&eps=2").text
    assert "Results 1–4 of 4 of attack <strong>A</strong> on defense <strong>E</strong> at &epsilon;=2." in both


def _adversarial_pages(client, attack_id: int) -> list[str]:
    links = set(re.findall(r'href="(/adversarial/\d+)"', client.get(f"/results?attack_id={attack_id}").text))
    return [client.get(link).text for link in sorted(links)]


def _outcomes(page: str) -> set[str]:
    return set(re.findall(r'<span class="(?:bad|good)">(\w+)</span>', page))


def test_the_adversarial_page_names_a_target_for_targeted_attacks_only_and_says_error_as_results_does(site):
    """The fake defense answers the target class on some images of either attack: a "hit" on an
    untargeted attack's image is no target hit, on either page."""
    client, ids = site
    untargeted, targeted = _adversarial_pages(client, ids["A"]), _adversarial_pages(client, ids["T"])
    assert len(untargeted) == len(targeted) == 8
    for page in untargeted:
        assert "target class" not in page and "untargeted attack" in page and "target hit" not in page
    assert all("target class" in page for page in targeted)
    assert any("target hit" in page for page in targeted)
    results_a = client.get(f"/results?attack_id={ids['A']}").text
    results_t = client.get(f"/results?attack_id={ids['T']}").text
    assert "target hit" not in results_a and "target hit" in results_t
    everything = [*untargeted, *targeted, results_a, results_t]
    assert not any("fooled" in page for page in everything)
    assert set().union(*map(_outcomes, everything)) == {"error", "correct"}
    assert "error" in set().union(*map(_outcomes, untargeted)) and "error" in _outcomes(results_a)
