"""A team's own page of submissions (/my), the header's link to it, and the team's own rows
highlighted on the leaderboards, with the page cache keeping each reader's page its own."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arena.competition import rounds
from arena.db import transaction
from arena.models import Submission, Visibility
from arena.web.app import create_app
from conftest import make_settings
from factories import red_and_blue, synth_dataset

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path) -> TestClient:
    """Round "synthetic" (4 images, live) with red's attack and two defenses of blue."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN, epsilons=[4, 16])
    red_and_blue(settings)
    return TestClient(create_app(settings))


def _team(client: TestClient, name: str) -> dict[str, str]:
    token = client.post(f"/api/teams/{name}/token", headers=ORGANIZER).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _table(page: str, table_id: str) -> list[dict[str, str]]:
    """The rows of one of /my's tables, as text by column."""
    body = re.search(rf'id="{table_id}">(.*?)</table>', page, re.S).group(1)
    rows = re.findall(r"<tr data-submission=[^>]*>(.*?)</tr>", body, re.S)
    cells = [[re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
              for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)] for row in rows]
    return [dict(zip(("submission", "counts", "score", "rank", "logs"), c)) if len(c) == 5
            else dict(zip(("submission", "counts", "hidden", "logs"), c)) for c in cells]


def _with_hidden_final(client: TestClient) -> None:
    """A second round, "final", hidden until published, every submission entered (as carried)."""
    settings = client.app.state.settings
    synth_dataset(settings, 2, batch_size=2, name="final")
    with transaction(settings) as session:
        rounds.update(rounds.find(session, "final"), visibility=Visibility.HIDDEN)


def test_a_team_sees_its_entries_per_round_and_track_with_what_counts_and_no_score_where_hidden(client):
    _with_hidden_final(client)
    blue = _team(client, "blue")
    page = client.get("/my", headers=blue)
    assert page.status_code == 200 and "team blue" in page.text
    live = _table(page.text, "my-synthetic-defense")
    assert [(r["submission"], r["counts"].split()[0]) for r in live] == [("blue-1 accepted", "no"),
                                                                         ("blue-2 accepted", "yes")]
    assert [(r["score"], r["rank"]) for r in live] == [("0", "–"), ("0", "–")]  # visible, nothing scored yet
    assert "Make it count" in live[0]["counts"] and "Make it count" not in live[1]["counts"]
    hidden = _table(page.text, "my-final-defense")
    assert [r["submission"] for r in hidden] == ["blue-1 accepted", "blue-2 accepted"]
    assert all(r["hidden"] == "hidden until published" and "score" not in r for r in hidden)
    with transaction(client.app.state.settings) as session:
        ids = {s.name: s.id for s in session.scalars(select(Submission))}
    assert f'href="/submissions/{ids["blue-1"]}?dataset=final#runs">logs</a>' in page.text
    assert "red-attack" not in page.text and 'id="my-synthetic-attack"' not in page.text  # another team's


def test_the_counting_entry_is_chosen_from_the_page_and_the_form_comes_back_to_it(client):
    blue = _team(client, "blue")
    with transaction(client.app.state.settings) as session:
        blue_1 = session.scalar(select(Submission.id).where(Submission.name == "blue-1"))
    chosen = client.post(f"/submissions/{blue_1}/choose", data={"round": "synthetic", "next": "/my"}, headers=blue,
                         follow_redirects=False)
    assert chosen.status_code == 303 and chosen.headers["location"] == "/my"
    live = _table(client.get("/my", headers=blue).text, "my-synthetic-defense")
    assert [(r["submission"], r["counts"].split()[0]) for r in live] == [("blue-1 accepted", "yes"),
                                                                         ("blue-2 accepted", "no")]
    away = client.post(f"/submissions/{blue_1}/choose", data={"round": "synthetic", "next": "//evil.example/"},
                       headers=blue, follow_redirects=False)
    assert away.headers["location"] == "/"  # only a path on this site, as after logging in


def test_my_submissions_is_for_the_team_itself_and_organizers(client):
    red, blue = _team(client, "red"), _team(client, "blue")
    anonymous = client.get("/my")
    assert anonymous.status_code == client.get("/upload").status_code == 401
    assert "/login?next=/my" in anonymous.text.replace("%2F", "/")
    red_page = client.get("/my", headers=red).text
    assert [r["submission"] for r in _table(red_page, "my-synthetic-attack")] == ["red-attack accepted"]
    assert "blue-1" not in red_page
    other = client.get("/my?team=blue", headers=red)
    assert other.status_code == 403 and "/teams/blue" in other.text
    assert client.get("/my?team=blue", headers=blue).status_code == 200  # its own name is fine
    assert client.get("/my", headers=ORGANIZER).status_code == 422  # organizers have no team: they name one
    organizer_view = client.get("/my?team=blue", headers=ORGANIZER).text
    shown = [r["submission"] for r in _table(organizer_view, "my-synthetic-defense")]
    assert shown == ["blue-1 accepted", "blue-2 accepted"]
    assert client.get("/my?team=nobody", headers=ORGANIZER).status_code == 404


@pytest.mark.parametrize("path", ["/rounds", "/"])
def test_the_header_links_my_submissions_for_a_team_only(client, path):
    """On a page rendered per request and on the cached leaderboards page alike."""
    link = '<a href="/my">My submissions</a>'
    assert link in client.get(path, headers=_team(client, "blue")).text
    assert link not in client.get(path).text
    assert link not in client.get(path, headers=ORGANIZER).text


def _mine(page: str) -> list[str]:
    """The submissions of the rows highlighted as the reader's team's, in page order."""
    return re.findall(r'<tr class="mine">\s*<td>[^<]*</td>\s*<td><a href="/submissions/\d+">([^<]+)</a>'
                      r'<span class="visually-hidden"> \(your team\)</span>', page)


def test_the_leaderboards_highlight_the_reader_s_rows_and_the_cache_keeps_them_apart(client):
    """Team A, team B, the public, then A again: each is sent its own page, the last from the cache."""
    blue, red = _team(client, "blue"), _team(client, "red")
    first = client.get("/", headers=blue).text
    # its counting entry, on the defense board and in its folded worst case table
    assert _mine(first) == ["blue-2", "blue-2"] and first.count("(your team)") == 2
    red_page = client.get("/", headers=red).text
    assert _mine(red_page) == ["red-attack"] and "blue-2" in red_page and red_page.count("(your team)") == 1
    public = client.get("/").text
    assert "blue-2" in public and "red-attack" in public
    assert 'class="mine"' not in public and "(your team)" not in public
    organizers = client.get("/?scope=all", headers=ORGANIZER).text
    assert "blue-1" in organizers and 'class="mine"' not in organizers
    again = client.get("/", headers=blue).text
    assert again == first  # the stored page, still blue's own
