"""The competition's own pages and downloads, through the app (TestClient) on real SQLite:
the organizers' Markdown rendered safely, a round's public data in the 2017 layout, the
results bundle, team pages and self-registration."""

import io
import json
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from arena.competition import rounds
from arena.data.dataset import read_competition_csv
from arena.db import transaction
from arena.models import Entry, Image, Submission, SubmissionKind, Visibility, utcnow
from arena.results import bundle
from arena.web.app import create_app
from conftest import make_settings, wait_until
from factories import add_submission, red_and_blue, synth_dataset

TOKEN = "organizer-secret"
ORGANIZER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(tmp_path):
    """Round "synthetic" (4 images) with red's attack and two defenses of blue."""
    settings = make_settings(tmp_path / "arena", organizer_token=TOKEN, epsilons=[4, 16])
    red_and_blue(settings)
    return TestClient(create_app(settings))


def _organizer(client: TestClient) -> TestClient:
    assert client.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
    return client


def test_overview_and_rules_are_the_organizers_markdown_without_script(client):
    assert "have not written an overview yet" in client.get("/competition").text
    _organizer(client).post("/organizer/pages", data={
        "overview": "# Spring Cup\n\nAttack **everything**. <script>alert(1)</script> [x](javascript:alert(2))",
        "rules": "1. One counting entry per track\n2. No network", "self_registration": "true"})
    page = re.search(r'<article class="help" id="page">(.*?)</article>', client.get("/competition").text, re.S).group(1)
    assert "<h1>Spring Cup</h1>" in page and "<strong>everything</strong>" in page
    assert "<script>" not in page and "&lt;script&gt;" in page and 'href="javascript:' not in page
    assert "<li>No network</li>" in client.get("/rules").text


def test_public_data_is_the_2017_layout_and_a_hidden_set_is_refused(client, tmp_path):
    settings = client.app.state.settings
    assert client.get("/data/synthetic.zip").status_code == 403
    assert "No round's images are public" in client.get("/data").text
    with transaction(settings) as session:
        rounds.update(rounds.find(session, "synthetic"), data_public=True)
    assert 'href="/data/synthetic.zip"' in client.get("/data").text
    response = client.get("/data/synthetic.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    folder = tmp_path / "downloaded"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(folder)
    rows = read_competition_csv(folder / "dev_dataset.csv", folder / "images")  # read back as any 2017 dataset is
    with transaction(settings) as session:
        stored = {(i.name, i.true_label, i.target_class) for i in session.scalars(select(Image))}
    assert {(row.name, row.true_label, row.target_class) for row in rows} == stored


def test_the_results_bundle_pins_what_produced_the_figures(client):
    settings = client.app.state.settings
    assert client.get("/rounds/synthetic/results.zip").status_code == 403  # not published
    response = _organizer(client).get("/rounds/synthetic/results.zip")
    assert response.status_code == 200
    files = zipfile.ZipFile(io.BytesIO(response.content))
    assert {"manifest.json", "error_matrix.csv", "defense_results.csv", "classifications.parquet"} <= set(files.namelist())
    manifest = json.loads(files.read("manifest.json"))
    with transaction(settings) as session:
        assert manifest["dataset"]["sha256"] == bundle.dataset_sha256(session, rounds.find(session, "synthetic").dataset_id)
    assert manifest["dataset"]["images"] == 4 and manifest["round"]["epsilons"] == [4, 16]
    entries = {s["name"]: s for s in manifest["submissions"]}
    assert entries["blue-2"]["counting"] and not entries["blue-1"]["counting"]
    assert entries["red-attack"]["code_sha256"] == "red-attack".ljust(64, "0")
    assert manifest["settings"]["sandbox"]["memory"] == "512m"


def test_a_team_page_lists_every_submission_with_what_counts(client):
    page = client.get("/teams/blue").text
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r'id="team-submissions">(.*?)</table>', page, re.S).group(1), re.S)
    cells = [re.sub(r"<[^>]+>", "", row).split() for row in rows[1:]]
    assert [(c[0], c[1], c[4]) for c in cells] == [("synthetic", "blue-1", "no"), ("synthetic", "blue-2", "yes")]
    assert client.get("/teams/nobody").status_code == 404
    assert 'href="/teams/blue"' in client.get("/?scope=all", headers=ORGANIZER).text


def test_a_team_page_gives_no_rank_before_anything_is_scored(client):
    """Team pages showed "score 0, rank 1 of 1" before any job ran; a rank now needs a score."""
    page = client.get("/teams/blue", headers=ORGANIZER).text
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r'id="team-submissions">(.*?)</table>', page, re.S).group(1), re.S)
    cells = [re.sub(r"<[^>]+>", " ", row).split() for row in rows[1:]]
    assert [(c[1], c[-3:]) for c in cells] == [("blue-1", ["no", "0", "–"]), ("blue-2", ["yes", "0", "–"])]


def test_teams_sign_up_themselves_only_where_allowed(client):
    form = {"team": "green", "member": "Grace", "contact": "grace@example.org"}
    refused = client.post("/register", data=form)
    assert refused.status_code == 403 and "ask the organizers for a token" in refused.text
    admin = _organizer(TestClient(client.app))  # the switch is the organizers'
    admin.post("/organizer/pages", data={"overview": "", "rules": "", "self_registration": "true"})
    signed = client.post("/register", data=form)
    token = re.search(r'<pre id="token">([^<]+)</pre>', signed.text).group(1)
    assert client.get("/api/rounds", headers={"Authorization": f"Bearer {token}"}).json()[0]["uploads_left"]
    again = client.post("/register", data=form)
    assert again.status_code == 409 and "a team named &#39;green&#39; exists" in again.text
    assert "Grace &lt;grace@example.org&gt;" in client.get("/teams/green", headers=ORGANIZER).text
    assert "grace@example.org" not in client.get("/teams/green").text  # contacts are for organizers


def test_sign_ups_are_one_team_a_name_checked_and_limited_per_address(client):
    from arena.web.limits import AddressLimiter

    admin = _organizer(TestClient(client.app))
    admin.post("/organizer/pages", data={"overview": "", "rules": "", "self_registration": "true"})
    client.app.state.registration_limiter = AddressLimiter(2, 3600)
    assert client.post("/register", data={"team": "bravo", "member": "Ada"}).status_code == 200
    taken = client.post("/register", data={"team": "BRAVO", "member": "Eve"})
    assert taken.status_code == 409 and "a team named &#39;bravo&#39; exists" in taken.text
    slash = client.post("/register", data={"team": "../../organizer", "member": "Eve"})
    assert slash.status_code == 422 and "may not hold a slash" in slash.text
    assert client.post("/register", data={"team": "charlie", "member": "Cy"}).status_code == 200
    flood = client.post("/register", data={"team": "delta", "member": "Dee"})  # a third from one address
    assert flood.status_code == 429 and "too many teams signed up from this address" in flood.text
    assert 0 < int(flood.headers["retry-after"]) <= 3600
    assert client.get("/teams/delta").status_code == 404


def test_the_forms_choose_mark_baselines_and_run_the_rounds(client):
    """What the API does, the pages' forms do: a team picks its counting entry on the
    submission page; organizers mark a baseline, close, carry into and publish rounds."""
    settings = client.app.state.settings
    with transaction(settings) as session:
        ids = {s.name: s.id for s in session.scalars(select(Submission))}
    blue = TestClient(client.app)
    token = client.post("/api/teams/blue/token", headers=ORGANIZER).json()["token"]
    blue.post("/login", data={"token": token})
    page = blue.get(f"/submissions/{ids['blue-1']}").text
    assert "does not count for team blue" in page and "Make this the one that counts" in page
    assert blue.post(f"/submissions/{ids['blue-1']}/choose", data={"round": "synthetic"}).status_code == 200
    assert "<strong>counts</strong> for team blue" in blue.get(f"/submissions/{ids['blue-1']}").text
    assert blue.post(f"/submissions/{ids['red-attack']}/choose", data={"round": "synthetic"}).status_code == 403
    assert blue.post(f"/submissions/{ids['blue-2']}/baseline", data={"baseline": "true"}).status_code == 403

    admin = _organizer(TestClient(client.app))
    admin.post(f"/submissions/{ids['blue-2']}/baseline", data={"baseline": "true"})
    assert 'class="tag baseline"' in admin.get("/?scope=all").text
    synth_dataset(settings, 2, batch_size=2, name="final")
    with transaction(settings) as session:  # the factory entered everything; start the final round empty
        final = rounds.find(session, "final")
        for entry in session.scalars(select(Entry).where(Entry.round_id == final.id)):
            session.delete(entry)
    admin.post("/organizer/rounds/synthetic/close")
    landed = admin.post("/organizer/rounds/final/carry", data={"counting_from": "synthetic"})
    notice = re.search(r'id="rounds-notice">(.*?)</p>', landed.text).group(1)
    assert notice.startswith("2 entries carried into final. Next: run its jobs")
    assert notice.endswith('<a href="/organizer?dataset=final" id="run-carried">Run its jobs</a>')  # that round's page
    again = admin.post("/organizer/rounds/final/carry", data={"counting_from": "synthetic"})
    assert "Nothing was carried into final" in again.text
    assert "rounds-notice" not in blue.get("/rounds?carried=5&into=final").text  # for organizers only
    assert "rounds-notice" not in admin.get("/rounds?carried=5&into=nowhere").text  # only rounds that exist
    with transaction(settings) as session:
        final = rounds.find(session, "final")
        carried = set(session.scalars(select(Entry.submission_id).where(Entry.round_id == final.id)))
        assert carried == {ids["red-attack"], ids["blue-1"]}  # blue's chosen one, not its latest
        assert rounds.window(rounds.find(session, "synthetic")).state(utcnow()) == "closed"
    asked = admin.post("/organizer/rounds/final/publish")  # publishing cannot be undone: it asks first
    assert asked.status_code == 200 and "Publish round final?" in asked.text and "cannot be undone" in asked.text
    with transaction(settings) as session:
        assert rounds.find(session, "final").visibility is not Visibility.PUBLISHED  # asking is not doing
    refused = admin.post("/organizer/rounds/final/publish", data={"confirmed": "true"})
    assert refused.status_code == 409 and "jobs not done" in refused.text


def test_a_hidden_round_shows_its_leaderboards_to_organizers_until_it_is_published(client, monkeypatch):
    """The round's own visibility, beside the tournament-wide switch: hidden from teams and the
    public (403) while the round runs; public once it is published."""
    settings = client.app.state.settings
    client.app.state.standings._recheck = 0  # every request checks the round again
    with transaction(settings) as session:
        rounds.update(rounds.find(session, "synthetic"), visibility=Visibility.HIDDEN)
    hidden = client.get("/api/leaderboards/defense")
    assert hidden.status_code == 403 and "hidden" in hidden.json()["detail"]
    assert client.get("/api/leaderboards/defense", headers=ORGANIZER).status_code == 200
    with transaction(settings) as session:
        rounds.publish(rounds.find(session, "synthetic"), unfinished_jobs=0)  # no job here is ever run
    # the API never waits for a refresh: the answer after publishing may be the one before, once
    wait_until(lambda: client.get("/api/leaderboards/defense").status_code == 200, 10, "the published round's board")


def test_organizers_find_a_round_s_bundle_before_publishing_and_filter_its_own_entries(client):
    """The rounds page linked no unpublished round's bundle (organizers may download it), and
    the results filter listed other rounds' and rejected submissions (issue 30, finding 11)."""
    from arena.models import SubmissionStatus

    settings = client.app.state.settings
    with transaction(settings) as session:
        add_submission(session, "broken", SubmissionKind.DEFENSE, owner="blue", status=SubmissionStatus.REJECTED)
    synth_dataset(settings, 2, batch_size=2, name="final")
    with transaction(settings) as session:  # the factory entered everything; final keeps only a new one
        final = rounds.find(session, "final")
        for entry in session.scalars(select(Entry).where(Entry.round_id == final.id)):
            session.delete(entry)
    with transaction(settings) as session:  # entered everywhere by the factory: take it out of synthetic
        only = add_submission(session, "final-only", SubmissionKind.DEFENSE, owner="green")
        session.delete(session.get(Entry, (rounds.find(session, "synthetic").id, only.id)))
    organizer = _organizer(TestClient(client.app))
    assert 'href="/rounds/synthetic/results.zip" class="organizer-bundle"' in organizer.get("/rounds").text
    assert "organizer-bundle" not in client.get("/rounds").text

    def offered(dataset: str) -> list[str]:
        page = organizer.get(f"/results?dataset={dataset}").text
        selects = re.findall(r'<select name="(?:attack|defense)_id">(.*?)</select>', page, re.S)
        return sorted(name for select in selects for name in re.findall(r'<option value="\d+" ?>([^<]+)</option>', select))

    assert offered("synthetic") == ["blue-1", "blue-2", "red-attack"]  # not the rejected one, not the final's
    assert offered("final") == ["final-only"]
