"""Pages follow the round in context (issue 30, finding 3): the standings pages show the round
the visitor chose, else the newest whose results everyone may see, with a switcher to the
others; the header's links keep the page's round; a submission's page is about a round it
takes part in and links the others. TestClient on real SQLite.

Before: every page showed the newest dataset, so while dev was live and a hidden final had
been made, the home page said the leaderboards were hidden, and the header's Error matrix and
Organizer links dropped the round a visitor was reading."""

import re

import pytest
from fastapi.testclient import TestClient

from arena.competition import rounds
from arena.db import transaction
from arena.models import SubmissionKind, Visibility
from arena.web.app import create_app
from arena.web.cache import Pick
from conftest import make_settings
from factories import add_submission, synth_dataset

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path) -> TestClient:
    """Round dev (live) and the newer round final (hidden), both with red's attack and blue's defense."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN, epsilons=[4])
    synth_dataset(settings, 4, batch_size=2, name="dev")
    with transaction(settings) as session:
        add_submission(session, "red-attack", SubmissionKind.ATTACK, owner="red")
        add_submission(session, "blue-defense", SubmissionKind.DEFENSE, owner="blue")
    synth_dataset(settings, 4, batch_size=2, name="final")  # enters both, as a carry would
    with transaction(settings) as session:
        rounds.update(rounds.find(session, "final"), visibility=Visibility.HIDDEN)
    return TestClient(create_app(settings))


def _switcher(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", re.search(r'id="round-switcher"[^>]*>(.*?)</nav>', page, re.S)
                                      .group(1))).strip()


def _nav(page: str) -> dict[str, str]:
    nav = re.search(r"<nav>(.*?)</nav>", page, re.S).group(1)
    return {text: href for href, text in re.findall(r'<a href="([^"]*)">([^<]+)</a>', nav)}


def test_the_standings_pages_show_the_live_round_not_a_newer_hidden_one(client):
    for path in ("/", "/matrix", "/curves"):
        page = client.get(path).text
        assert "hidden" not in page.split('id="round-switcher"')[0], path
        assert 'id="hidden-notice"' not in page, path
        assert _switcher(page) == "Round: dev · final (hidden until published)", path
        assert '<strong aria-current="page">dev</strong>' in page
        assert f'<a href="{path}?dataset=final">final</a>' in page
    assert "red-attack" in client.get("/").text.split('id="board-attack"')[1]
    assert 'id="round-banner">Round <strong>dev</strong>' in client.get("/").text

    hidden = client.get("/matrix?dataset=final").text  # the visitor's choice
    assert "The results of round final are hidden until the organizers publish it." in hidden
    assert '<strong aria-current="page">final</strong>' in hidden and '<a href="/matrix?dataset=dev">dev</a>' in hidden


def test_the_header_s_links_keep_the_round_a_page_is_about(client):
    organizer = _nav(client.get("/?dataset=final", headers=ORGANIZER).text)
    assert organizer["Error matrix"] == "/matrix?dataset=final" and organizer["Organizer"] == "/organizer?dataset=final"
    assert organizer["Leaderboards"] == "/?dataset=final" and organizer["Results"] == "/results?dataset=final"
    page = client.get("/organizer?dataset=final", headers=ORGANIZER).text
    assert "Run the missing jobs on final" in page and '<a href="/organizer?dataset=dev">dev</a>' in page
    assert _nav(client.get("/").text)["Error matrix"] == "/matrix?dataset=dev"  # the round in view, named
    assert _nav(client.get("/rounds").text)["Error matrix"] == "/matrix"  # a page about no round


def test_one_snapshot_serves_the_round_in_view_and_its_name_with_each_page_s_own_login_link(client):
    """The round in view and the same round named share one snapshot (no second computation),
    and each address keeps its own page: the login link returns to the address read."""
    assert "next=/%3Fdataset%3Ddev" in client.get("/?dataset=dev").text
    assert 'href="/login?next=/"' in client.get("/").text
    standings = client.app.state.standings
    assert standings.get(Pick.IN_VIEW).snapshot is standings.get("dev").snapshot


def test_once_the_final_is_published_it_is_the_round_in_view(client):
    with transaction(client.app.state.settings) as session:
        rounds.publish(rounds.find(session, "final"), 0)
    client.app.state.standings.recheck()
    page = client.get("/").text
    assert _switcher(page) == "Round: dev · final (published)" and '<strong aria-current="page">final</strong>' in page


def test_a_submission_s_page_shows_its_round_s_jobs_and_visibility_and_links_its_other_rounds(client):
    ids = {s["name"]: s["id"] for s in client.get("/api/submissions").json()}
    attack = ids["red-attack"]
    final = client.get(f"/submissions/{attack}").text  # its newest round: final, hidden from the public
    assert "<h3>Jobs on final</h3>" in final and "hidden until the end" in final
    assert f'<a href="/submissions/{attack}?dataset=dev">dev</a>' in final
    assert '<strong aria-current="page">final</strong> (shown below)' in final
    dev = client.get(f"/submissions/{attack}?dataset=dev").text
    assert "<h3>Jobs on dev</h3>" in dev and "hidden until the end" not in dev and 'id="rank"' in dev
    assert _nav(dev)["Error matrix"] == "/matrix?dataset=dev"
